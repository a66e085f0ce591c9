import assert from 'node:assert/strict';
import { it } from 'node:test';
import { refundFor } from '../../src/policy/credits.ts';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

describeEachDb('provider errors with a bounded attempt count', (kind) => {
  const t = useTestServer(kind, {
    providers: { main: { sim: { latencyMs: 5, jitterMs: 2, errorRate: 0.45 } } },
    worker: { maxAttempts: 2 },
    pipelines: {
      photography: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 2 },
          { name: 'store', concurrency: 5 },
        ],
      },
    },
  });

  it('ends tasks partial or failed with the undelivered images refunded exactly once', async () => {
    const base = t.server.baseUrl;
    const users = ['r0', 'r1', 'r2', 'r3'];
    const ids: string[] = [];
    for (let i = 0; i < 16; i++) {
      const res = await postJson(base, '/v1/tasks', {
        user_id: users[i % 4],
        type: 'photography',
        plan: i % 4 === 3 ? 'start' : 'free',
      });
      assert.equal(res.status, 202);
      ids.push(res.body.id as string);
    }
    const tasks = await waitFor(
      'every task to end',
      async () => {
        const all = await Promise.all(ids.map(async (id) => (await getJson(base, `/v1/tasks/${id}`)).body));
        return all.every((b) => !['queued', 'running'].includes(b.state as string)) ? all : undefined;
      },
      { timeoutMs: 180_000 },
    );
    const states = new Set(tasks.map((b) => b.state));
    assert.ok(states.has('partial') || states.has('failed'), `errors must show: ${[...states].join(', ')}`);
    const { db } = t.server.ctx;
    for (const task of tasks) {
      const progress = task.progress as { done: number; failed: number; total: number };
      assert.equal(progress.done + progress.failed, progress.total);
      assert.equal((task.images as unknown[]).length, progress.done);
      const expected = refundFor(task.credits_charged as number, progress.total, progress.done);
      assert.equal(task.credits_refunded, expected, JSON.stringify(task));
      const ledger = await db.query<{ n: number; sum: number | null }>(
        `SELECT count(*)::int AS n, sum(delta)::int AS sum FROM credit_ledger WHERE task_id = $1 AND reason = 'refund'`,
        [task.id],
      );
      assert.equal(ledger.rows[0]!.n, expected > 0 ? 1 : 0);
      if (expected > 0) assert.equal(ledger.rows[0]!.sum, expected);
      const expectedState =
        progress.done === progress.total ? 'succeeded' : progress.done > 0 ? 'partial' : 'failed';
      assert.equal(task.state, expectedState);
    }
    // Attempts stayed within the bound.
    const attempts = await db.query<{ max: number }>(`SELECT max(attempts)::int AS max FROM jobs`);
    assert.ok(attempts.rows[0]!.max <= 2);
    for (const user of users) {
      const mine = tasks.filter((b) => b.user_id === user);
      const net = mine.reduce(
        (n, b) => n - (b.credits_charged as number) + (b.credits_refunded as number),
        0,
      );
      const credits = await getJson(base, `/v1/users/${user}/credits`);
      assert.equal(credits.body.balance, 1000 + net);
    }
  });
});
