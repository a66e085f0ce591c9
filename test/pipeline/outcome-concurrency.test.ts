import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { recordCallSuccess, recordJobFailure, recordStoreOutcome } from '../../src/pipeline/transitions.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { claimJobsWithTasks, type Claim } from '../../src/store/attempts.ts';
import type { Db } from '../../src/store/db.ts';
import { migrate } from '../../src/store/migrate.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { testConfig } from '../helpers/config.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { storedImageRow as image } from '../helpers/image-row.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * Every job of one task recording its outcome at the same moment, on PostgreSQL (PGlite has one
 * connection, so its transactions never overlap): whatever order they commit in, the stage
 * moves once, the task ends exactly once, and its counters and refund are exact. The expected
 * figures are counted by hand from the scenario, not read back from the code under test.
 */

const IMAGES = 24;
const CREDITS = 24;
const GRANT = 1000;

describe(
  'one task’s outcomes all at once [postgres]',
  { skip: PG_URL ? false : 'no PostgreSQL answers' },
  () => {
    let db: Db;
    let drop: () => Promise<void>;
    const config = testConfig({
      credits: { initialGrant: GRANT },
      plans: { wide: { images: IMAGES, credits: CREDITS, weight: 1 } },
      pipelines: {
        gen: { steps: [{ name: 'generate', provider: 'main', batchSize: 1 }, { name: 'store' }] },
      },
    });

    before(async () => {
      const created = await createPostgresDatabase();
      drop = created.drop;
      // A connection per outcome, so all of them are in flight together.
      db = await createPostgresDb({ url: created.url, poolSize: IMAGES + 4 });
      await migrate(db);
    });
    after(async () => {
      await db?.close();
      await drop?.();
    });

    async function admitAll(taskId: string): Promise<void> {
      await db.query(
        `WITH a AS (
         UPDATE jobs SET state = 'admitted', key_id = CASE WHEN kind = 'store' THEN NULL ELSE 'k1' END,
                         admitted_at = now()
          WHERE task_id = $1 AND state = 'queued' RETURNING id, kind)
       INSERT INTO key_requests (provider, key_id, job_id, admitted_at)
       SELECT 'main', 'k1', id, now() FROM a WHERE kind <> 'store'`,
        [taskId],
      );
    }

    async function claimAll(expected: number): Promise<Claim[]> {
      const claims = await claimJobsWithTasks(db, 'w-concurrent', 100, 60_000);
      assert.equal(claims.length, expected);
      return claims;
    }

    it('moves the stage once and ends the task once, with exact counters and one refund', async () => {
      const userId = 'u-concurrent';
      const { body } = await submitTask(
        db,
        config,
        submitRequest(userId, { type: 'gen', plan: 'wide', prompt: 'p', requestHash: 'h' }),
      );
      const taskId = body.id;

      // Round 1: 24 calls end together; images 0, 1 and 2 fail for good, the others succeed.
      const failedCalls = new Set([0, 1, 2]);
      await admitAll(taskId);
      const calls = await claimAll(IMAGES);
      const callResults = await Promise.all(
        calls.map((c) =>
          db.transaction((tx) =>
            failedCalls.has(c.job.first_index)
              ? recordJobFailure(tx, config, c.job, { kind: 'permanent', message: 'refused' }, 0).then(
                  (r) => r.recorded,
                )
              : recordCallSuccess(tx, config, c.job, [`staging/${taskId}/generate/${c.job.first_index}.png`]),
          ),
        ),
      );
      assert.deepEqual(callResults, Array<boolean>(IMAGES).fill(true));
      const mid = await db.query<Record<string, unknown>>(
        `SELECT t.state, t.stage, t.images_done, t.images_failed,
              (SELECT count(*)::int FROM jobs j WHERE j.task_id = t.id AND j.kind = 'store' AND j.state = 'queued') AS store_jobs,
              (SELECT count(*)::int FROM events e WHERE e.task_id = t.id AND e.type = 'stage') AS stage_events
         FROM tasks t WHERE t.id = $1`,
        [taskId],
      );
      assert.deepEqual(mid.rows[0], {
        state: 'queued',
        stage: 'store',
        images_done: 0,
        images_failed: 3,
        store_jobs: 21,
        stage_events: 1,
      });

      // Round 2: the 21 store jobs end together; images 3 and 4 turn out not to be images.
      const rejectedStores = new Set([3, 4]);
      await admitAll(taskId);
      const stores = await claimAll(IMAGES - failedCalls.size);
      const storeResults = await Promise.all(
        stores.map((s) =>
          db.transaction((tx) =>
            recordStoreOutcome(
              tx,
              config,
              s.job,
              rejectedStores.has(s.job.first_index)
                ? { stored: [], rejected: [{ index: s.job.first_index, message: 'not an image' }] }
                : { stored: [image(taskId, s.job.first_index)], rejected: [] },
              0,
            ),
          ),
        ),
      );
      assert.deepEqual(
        storeResults,
        stores.map(() => ({ recorded: true, retried: false })),
      );

      const { rows } = await db.query<Record<string, unknown>>(
        `SELECT t.state, t.images_done, t.images_failed, t.credits_charged, t.credits_refunded,
              t.finished_at IS NOT NULL AS finished,
              (SELECT count(*)::int FROM images i WHERE i.task_id = t.id) AS images,
              (SELECT count(*)::int FROM jobs j WHERE j.task_id = t.id AND j.state IN ('queued', 'admitted', 'running')) AS open_jobs,
              (SELECT count(*)::int FROM events e WHERE e.task_id = t.id AND e.type = 'finished') AS finished_events,
              (SELECT count(*)::int FROM events e WHERE e.task_id = t.id AND e.type = 'progress') AS progress_events,
              (SELECT e.data FROM events e WHERE e.task_id = t.id AND e.type = 'finished') AS finished_data,
              (SELECT json_agg(l.delta) FROM credit_ledger l WHERE l.task_id = t.id AND l.reason = 'refund') AS refunds,
              (SELECT u.balance FROM users u WHERE u.id = t.user_id) AS balance
         FROM tasks t WHERE t.id = $1`,
        [taskId],
      );
      // 24 images: 3 calls failed, 2 stored images rejected, 19 delivered. The charge of 24 for
      // 24 images refunds 5 for the 5 undelivered, once.
      assert.deepEqual(rows[0], {
        state: 'partial',
        images_done: 19,
        images_failed: 5,
        credits_charged: 24,
        credits_refunded: 5,
        finished: true,
        images: 19,
        open_jobs: 0,
        finished_events: 1,
        progress_events: 21,
        finished_data: { state: 'partial', done: 19, failed: 5, total: 24, credits_refunded: 5, attempt: 1 },
        refunds: [5],
        balance: GRANT - CREDITS + 5,
      });
    });
  },
);
