/**
 * When a worker claims: a slot that frees claims the next admitted job only when the worker's
 * slots were all taken (admissions otherwise wake it with their NOTIFY).
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import type { Db } from '../../src/store/db.ts';
import { acquireLeadership } from '../../src/store/leader.ts';
import { writeAdmissions } from '../../src/store/schedule.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { workerContext } from '../helpers/worker.ts';
import { submitRequest } from '../helpers/submit-request.ts';

async function submit(db: Db, config: Config, userId: string, type: string, plan: string): Promise<string> {
  const r = await submitTask(
    db,
    config,
    submitRequest(userId, { type, plan, prompt: userId, requestHash: `${userId}:${plan}` }),
  );
  return r.body.id;
}

describeEachDb('a worker', (kind) => {
  const t = useTestDb(kind);

  it('claims the next admitted job when a job ends while its slots were all taken', async () => {
    const config = testConfig({
      plans: { three: { images: 3, credits: 3, weight: 1 } },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: 1 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
      // One slot, and no poll within the test: only a freed slot can start the next job.
      worker: { concurrency: 1, pollMs: 600_000 },
    });
    // Earlier tests' leftovers must not be claimable.
    await t.db.query(`UPDATE jobs SET state = 'canceled' WHERE state IN ('queued', 'admitted', 'running')`);
    const taskId = await submit(t.db, config, 'claims', 'gen', 'three');
    const { rows } = await t.db.query<{ id: string }>(
      `SELECT id FROM jobs WHERE task_id = $1 AND kind = 'generate' ORDER BY first_index`,
      [taskId],
    );
    assert.equal(rows.length, 3);
    // No scheduler: the three calls are admitted at once, before the worker starts, so no
    // admission's NOTIFY reaches it afterwards.
    await t.db.query(`UPDATE scheduler_leader SET expires_at = now() - interval '1 second'`);
    const term = (await acquireLeadership(t.db, 'sched-claims', 60_000))!;
    const written = await writeAdmissions(
      t.db,
      'sched-claims',
      term,
      rows.map((r) => ({ jobId: r.id, keyId: 'k1' })),
    );
    assert.equal(written?.admitted, 3);
    const worker = await startWorker(workerContext(t.db, config), 'w-claims', 'worker');
    try {
      const done = await waitFor(
        'the three calls to succeed one after another on the one slot',
        async () => {
          const { rows: states } = await t.db.query<{ state: string }>(
            `SELECT state FROM jobs WHERE task_id = $1 AND kind = 'generate'`,
            [taskId],
          );
          return states.every((s) => s.state === 'succeeded') ? states.length : undefined;
        },
        { timeoutMs: 60_000 },
      );
      assert.equal(done, 3);
    } finally {
      await worker.stop(0);
    }
  });
});
