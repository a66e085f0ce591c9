import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Queryable } from '../../src/store/db.ts';
import { createAfterCommitNotifier } from '../../src/store/wake.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

describeEachDb('wake-ups sent after a commit', (kind) => {
  const t = useTestDb(kind);

  it('delivers every distinct notification, identical ones folded, sends one at a time', async () => {
    const heard: string[] = [];
    const offA = await t.db.listen('wake_test_a', (p) => heard.push(`a:${p}`));
    const offB = await t.db.listen('wake_test_b', (p) => heard.push(`b:${p}`));
    let inFlight = 0;
    let most = 0;
    let statements = 0;
    const q: Queryable = {
      async query(sql, params) {
        statements++;
        most = Math.max(most, ++inFlight);
        try {
          return await t.db.query(sql, params);
        } finally {
          inFlight--;
        }
      },
      exec: (sql) => t.db.exec(sql),
    };
    const errors: unknown[] = [];
    const wakes = createAfterCommitNotifier(q, (e) => errors.push(e));
    wakes.send('wake_test_a');
    // Queued while the first is on its way: one more statement carries all of these.
    wakes.send('wake_test_b', 't1');
    wakes.send('wake_test_b', 't1');
    wakes.send('wake_test_b', 't2');
    wakes.send('wake_test_a');
    await wakes.flush();
    await waitFor('the notifications', async () => (heard.length >= 4 ? true : undefined), {
      timeoutMs: 10_000,
    });
    assert.deepEqual(errors, []);
    assert.equal(most, 1);
    assert.equal(statements, 2);
    assert.deepEqual([...heard].sort(), ['a:', 'a:', 'b:t1', 'b:t2']);
    await offA();
    await offB();
  });
});
