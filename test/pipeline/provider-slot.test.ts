/**
 * A provider's concurrency counts requests open at the provider: a job's slot there frees when
 * the provider's answer has arrived, not when its outcome is recorded. The provider simulator
 * counts open requests on its own side, the independent check that the limit still holds.
 */
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { stopForecaster } from '../../src/scheduler/forecaster.ts';
import { capacityViews } from '../../src/scheduler/policy-input.ts';
import { reapExpiredLeases } from '../../src/scheduler/reaper.ts';
import { startScheduler } from '../../src/scheduler/scheduler.ts';
import { claimJobs } from '../../src/store/attempts.ts';
import type { Db } from '../../src/store/db.ts';
import { markProviderDone } from '../../src/store/jobs.ts';
import { acquireLeadership } from '../../src/store/leader.ts';
import { readCapacity, writeAdmissions } from '../../src/store/schedule.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdableStorage, localStorage, workerContext } from '../helpers/worker.ts';
import { useOneKeyProvider } from '../helpers/fake-provider.ts';
import { submitRequest } from '../helpers/submit-request.ts';

async function submit(db: Db, config: Config, userId: string, plan: string): Promise<string> {
  const r = await submitTask(
    db,
    config,
    submitRequest(userId, { type: 'gen', plan, prompt: userId, requestHash: `${userId}:${plan}` }),
  );
  return r.body.id;
}

interface CallRow {
  first_index: number;
  state: string;
  started: boolean;
  answered: boolean;
}

async function calls(db: Db, taskId: string): Promise<CallRow[]> {
  const { rows } = await db.query<CallRow>(
    `SELECT first_index, state, started_at IS NOT NULL AS started, provider_done_at IS NOT NULL AS answered
       FROM jobs WHERE task_id = $1 AND kind = 'generate' ORDER BY first_index`,
    [taskId],
  );
  return rows;
}

/** The provider's and its key's requests in flight, and the jobs holding worker slots, as the scheduler sees them. */
async function inFlight(db: Db, config: Config) {
  const snap = await readCapacity(db, { windowMs: 60_000, workerStaleMs: 60_000 });
  const views = capacityViews(config, snap);
  const provider = views.providers.find((p) => p.name === 'main')!;
  return {
    provider: provider.inFlight,
    key: provider.keys.find((k) => k.id === 'k1')!.inFlight,
    jobs: Object.values(views.userInFlight).reduce((a, b) => a + b, 0),
  };
}

describeEachDb('a provider slot', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  const fake = useOneKeyProvider({ concurrency: 1, latencyMs: 20 });
  before(() => {
    db = t.db;
  });

  it('frees when the answer arrives: the next call starts while the first job is still recording', async () => {
    const config = testConfig({
      plans: { two: { images: 2, credits: 2, weight: 1 } },
      providers: {
        main: {
          type: 'sim',
          baseUrl: fake().url,
          concurrency: 1,
          keys: [{ id: 'k1', rpm: 100_000, concurrency: 1 }],
        },
      },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: 1 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
      worker: { concurrency: 4, pollMs: 50 },
    });
    const held = holdableStorage(localStorage());
    // The first call's staging write (after its answer, before its outcome) is held open.
    const hold = held.hold('put', (key) => /\/generate\/0000\.\w+$/.test(key));
    const ctx = workerContext(db, config, { storage: held.storage });
    const worker = await startWorker(ctx, 'w-slot', 'worker');
    const scheduler = await startScheduler(ctx, 'sched-slot');
    try {
      const taskId = await submit(db, config, 'slot', 'two');
      await hold.reached;
      // The second call gets the key's only slot and is answered, while the first job still runs.
      const second = await waitFor('the second call to be answered', async () => {
        const rows = await calls(db, taskId);
        return rows[1]?.answered ? rows : undefined;
      });
      assert.equal(second[0]!.state, 'running', 'the first job has not recorded its outcome');
      assert.equal(second[0]!.answered, true, 'the first call was marked answered');
      const key = fake().stats().providers.main!.keys.k1!;
      assert.equal(key.requests, 2, 'both calls reached the provider');
      assert.equal(key.max_in_flight, 1, 'the provider never saw two open requests on the key');
      assert.equal(key.rejected_429, 0, 'no request was refused for concurrency');
      hold.release();
      await waitFor('the task to succeed', async () => {
        const { rows } = await db.query<{ state: string }>('SELECT state FROM tasks WHERE id = $1', [taskId]);
        return rows[0]?.state === 'succeeded';
      });
    } finally {
      hold.release();
      await scheduler.stop();
      await stopForecaster(ctx);
      await worker.stop(0);
    }
  });

  it('counts a retried attempt again after the answered one lost its lease', async () => {
    const config = testConfig({
      plans: { one: { images: 1, credits: 1, weight: 1 } },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: 1 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
      worker: { maxAttempts: 3 },
    });
    // Earlier tests' leftovers must not be claimable or counted.
    await db.query(`UPDATE jobs SET state = 'canceled' WHERE state IN ('queued', 'admitted', 'running')`);
    const taskId = await submit(db, config, 'retried', 'one');
    const { rows } = await db.query<{ id: string }>('SELECT id FROM jobs WHERE task_id = $1', [taskId]);
    const jobId = rows[0]!.id;
    await db.query(`UPDATE scheduler_leader SET expires_at = now() - interval '1 second'`);
    const term = (await acquireLeadership(db, 'sched-retry', 60_000))!;
    const admit = async () => {
      const written = await writeAdmissions(db, 'sched-retry', term, [{ jobId, keyId: 'k1' }]);
      assert.equal(written?.admitted, 1);
    };

    await admit();
    assert.deepEqual(await inFlight(db, config), { provider: 1, key: 1, jobs: 1 }, 'admitted: counted');
    const [first] = await claimJobs(db, 'w-crashed', 1, 60_000);
    assert.equal(first?.id, jobId);
    assert.deepEqual(await inFlight(db, config), { provider: 1, key: 1, jobs: 1 }, 'calling: counted');
    assert.equal(await markProviderDone(db, jobId, first!.lease_token), true);
    assert.deepEqual(
      await inFlight(db, config),
      { provider: 0, key: 0, jobs: 1 },
      'answered: off the provider, still on a worker slot',
    );

    // The worker dies before its outcome: the lease runs out and the reaper puts the job back.
    await db.query(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [jobId]);
    const reaped = await reapExpiredLeases(db, config, () => 0.5);
    assert.equal(reaped.requeued, 1);
    assert.deepEqual(await inFlight(db, config), { provider: 0, key: 0, jobs: 0 }, 'queued: not in flight');

    await admit();
    assert.deepEqual(await inFlight(db, config), { provider: 1, key: 1, jobs: 1 }, 'admitted again: counted');
    const [retry] = await claimJobs(db, 'w-next', 1, 60_000);
    assert.equal(retry?.id, jobId);
    assert.equal(retry!.provider_done_at, null, 'the new attempt starts unanswered');
    assert.deepEqual(await inFlight(db, config), { provider: 1, key: 1, jobs: 1 }, 'the new call: counted');
    assert.equal(
      await markProviderDone(db, jobId, first!.lease_token),
      false,
      'the dead attempt cannot mark the new one answered',
    );
    assert.deepEqual(await inFlight(db, config), { provider: 1, key: 1, jobs: 1 });
    assert.equal(await markProviderDone(db, jobId, retry!.lease_token), true);
    assert.deepEqual(await inFlight(db, config), { provider: 0, key: 0, jobs: 1 });
  });
});
