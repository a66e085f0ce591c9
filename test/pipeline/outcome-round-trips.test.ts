import assert from 'node:assert/strict';
import { it } from 'node:test';
import { recordCallSuccess, recordStoreSuccess } from '../../src/pipeline/transitions.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { claimJobsWithTasks, type Claim } from '../../src/store/attempts.ts';
import type { Db } from '../../src/store/db.ts';
import { testConfig } from '../helpers/config.ts';
import { countingDb } from '../helpers/counting-db.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { storedImageRow as image } from '../helpers/image-row.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * A job's attempt, from its claim to its outcome, in statements: each one a round trip that a
 * worker's connection (on the embedded database, the process's only one) waits for. Counted
 * here through a task's whole life, generate → store, with what each outcome must have written
 * checked row by row, so merging statements cannot lose a write and the count cannot silently
 * grow back (docs/benchmarks.md: engine overhead).
 */

describeEachDb('outcome round trips', (kind) => {
  const t = useTestDb(kind);
  const config = testConfig({
    plans: { free: { images: 2, credits: 2, weight: 1 } },
    pipelines: { gen: { steps: [{ name: 'generate', provider: 'main', batchSize: 1 }, { name: 'store' }] } },
  });

  /** Admits the task's queued jobs as the scheduler would (state, key, reservation). */
  async function admit(taskId: string): Promise<void> {
    await t.db.query(
      `WITH a AS (
         UPDATE jobs SET state = 'admitted', key_id = CASE WHEN kind = 'store' THEN NULL ELSE 'k1' END,
                         admitted_at = now()
          WHERE task_id = $1 AND state = 'queued' RETURNING id, kind)
       INSERT INTO key_requests (provider, key_id, job_id, admitted_at)
       SELECT 'main', 'k1', id, now() FROM a WHERE kind <> 'store'`,
      [taskId],
    );
  }

  async function claimAll(db: Db, expected: number): Promise<Claim[]> {
    const claims = await claimJobsWithTasks(db, 'w-rt', 10, 60_000);
    assert.equal(claims.length, expected);
    return claims.sort((a, b) => a.job.first_index - b.job.first_index);
  }

  it('claims in one statement with the task, and records each outcome in two or three', async () => {
    const { body } = await submitTask(
      t.db,
      config,
      submitRequest('rt-outcome', { type: 'gen', plan: 'free', prompt: 'p', requestHash: 'h' }),
    );
    const taskId = body.id;
    // The provider's AIMD row as the scheduler's first pass leaves it (at the cap).
    await t.db.query(
      `INSERT INTO provider_state (provider, key_id, effective_concurrency) VALUES ('main', '', 20)
       ON CONFLICT DO NOTHING`,
    );
    await admit(taskId);

    const claimStatements: string[] = [];
    const calls = await claimAll(countingDb(t.db, claimStatements), 2);
    assert.equal(claimStatements.length, 1, claimStatements.join('\n---\n'));
    for (const c of calls) {
      assert.equal(c.task.id, taskId);
      assert.equal(c.task.prompt, 'p');
      assert.ok(c.task.created_at instanceof Date);
      assert.equal(c.job.state, 'running');
      assert.ok(c.job.started_at instanceof Date);
    }
    const stamps = await t.db.query<{ same: boolean }>(
      `SELECT k.started_at = j.started_at AS same FROM key_requests k JOIN jobs j ON j.id = k.job_id
        WHERE j.task_id = $1`,
      [taskId],
    );
    assert.deepEqual(
      stamps.rows.map((r) => r.same),
      [true, true],
    );

    // Generate outcomes: lock job and task (reading the provider's AIMD state); then complete
    // (counting the task's other open jobs) and insert the store job (with the stage change and
    // its event) in one statement.
    const perCall: number[] = [];
    for (const [i, c] of calls.entries()) {
      const statements: string[] = [];
      const ok = await countingDb(t.db, statements).transaction((tx) =>
        recordCallSuccess(tx, config, c.job, [`staging/${taskId}/generate/${i}.png`]),
      );
      assert.equal(ok, true);
      perCall.push(statements.length);
    }
    assert.deepEqual(perCall, [2, 2]);
    const afterCalls = await t.db.query<{ stage: string; store_jobs: number; events: string }>(
      `SELECT t.stage,
              (SELECT count(*)::int FROM jobs j WHERE j.task_id = t.id AND j.kind = 'store' AND j.state = 'queued') AS store_jobs,
              (SELECT string_agg(e.type || COALESCE(':' || (e.data->>'stage'), ''), ',' ORDER BY e.id)
                 FROM events e WHERE e.task_id = t.id) AS events
         FROM tasks t WHERE t.id = $1`,
      [taskId],
    );
    // One stage event, not one per call.
    assert.deepEqual(afterCalls.rows[0], { stage: 'store', store_jobs: 2, events: 'queued,stage:store' });

    await admit(taskId);
    const stores = await claimAll(t.db, 2);
    // Store outcomes: lock; then the image, the counters, the progress event and the job's end
    // in one statement; the last one also ends the task (state, finished event and the
    // scheduler's wake-up in one).
    const perStore: number[] = [];
    for (const s of stores) {
      const statements: string[] = [];
      const ok = await countingDb(t.db, statements).transaction((tx) =>
        recordStoreSuccess(tx, config, s.job, [image(taskId, s.job.first_index)]),
      );
      assert.equal(ok, true);
      perStore.push(statements.length);
    }
    assert.deepEqual(perStore, [2, 3]);

    const { rows } = await t.db.query<Record<string, unknown>>(
      `SELECT t.state, t.images_done, t.images_failed, t.credits_refunded,
              (SELECT count(*)::int FROM images i WHERE i.task_id = t.id) AS images,
              (SELECT count(*)::int FROM jobs j WHERE j.task_id = t.id AND j.state = 'succeeded') AS succeeded,
              (SELECT count(*)::int FROM jobs j WHERE j.task_id = t.id) AS jobs,
              (SELECT e.data FROM events e WHERE e.task_id = t.id AND e.type = 'finished') AS finished,
              (SELECT count(*)::int FROM events e WHERE e.task_id = t.id AND e.type = 'progress') AS progress
         FROM tasks t WHERE t.id = $1`,
      [taskId],
    );
    assert.deepEqual(rows[0], {
      state: 'succeeded',
      images_done: 2,
      images_failed: 0,
      credits_refunded: 0,
      images: 2,
      succeeded: 4,
      jobs: 4,
      finished: { state: 'succeeded', done: 2, failed: 0, total: 2, credits_refunded: 0, attempt: 1 },
      progress: 2,
    });
  });

  it('a stale attempt (its lease taken over) changes nothing, in one statement', async () => {
    const { body } = await submitTask(
      t.db,
      config,
      submitRequest('rt-stale', { type: 'gen', plan: 'free', prompt: 'p', requestHash: 'h' }),
    );
    await admit(body.id);
    const [first] = await claimAll(t.db, 2);
    const statements: string[] = [];
    const ok = await countingDb(t.db, statements).transaction((tx) =>
      recordCallSuccess(tx, config, { ...first!.job, lease_token: first!.job.lease_token - 1 }, ['x.png']),
    );
    assert.equal(ok, false);
    assert.equal(statements.length, 1);
    const { rows } = await t.db.query<{ state: string }>('SELECT state FROM jobs WHERE id = $1', [
      first!.job.id,
    ]);
    assert.equal(rows[0]!.state, 'running');
  });
});
