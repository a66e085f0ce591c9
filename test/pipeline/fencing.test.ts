import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { recordCallSuccess } from '../../src/pipeline/transitions.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { createProviders } from '../../src/providers/registry.ts';
import type { ProviderAdapter } from '../../src/providers/types.ts';
import { reapExpiredLeases } from '../../src/scheduler/reaper.ts';
import type { Db } from '../../src/store/db.ts';
import { claimJobs } from '../../src/store/attempts.ts';
import { restampAttemptRequests, saveRemoteRef, type JobRow } from '../../src/store/jobs.ts';
import { acquireLeadership } from '../../src/store/leader.ts';
import { writeAdmissions } from '../../src/store/schedule.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdableStorage, localStorage, workerContext } from '../helpers/worker.ts';
import { submitRequest } from '../helpers/submit-request.ts';

const LEADER = 'test-leader';

/** Heartbeats far apart: the test decides when a lease runs out, not the clock. */
function fencingConfig(extra: Parameters<typeof testConfig>[0] = {}): Config {
  return testConfig({
    plans: { one: { images: 1, credits: 1, weight: 1 } },
    pipelines: {
      gen: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 1, cache: true },
          { name: 'store', concurrency: 5 },
        ],
      },
    },
    worker: { concurrency: 1, leaseMs: 120_000, heartbeatMs: 60_000, pollMs: 50, maxAttempts: 3 },
    ...extra,
  });
}

async function submit(db: Db, config: Config, userId: string, prompt: string): Promise<string> {
  const r = await submitTask(
    db,
    config,
    submitRequest(userId, {
      type: 'gen',
      plan: 'one',
      prompt,
      params: { seed: 7 },
      requestHash: `${userId}:${prompt}`,
    }),
  );
  return r.body.id;
}

/** Admits a task's queued jobs under the test's own leader term, as the scheduler would. */
async function admit(db: Db, taskId: string, keyId = 'k1'): Promise<JobRow[]> {
  const term = (await acquireLeadership(db, LEADER, 600_000))!;
  const { rows } = await db.query<JobRow>(`SELECT * FROM jobs WHERE task_id = $1 AND state = 'queued'`, [
    taskId,
  ]);
  const written = await writeAdmissions(
    db,
    LEADER,
    term,
    rows.map((j) => ({ jobId: j.id, keyId: j.kind === 'store' ? undefined : keyId })),
  );
  assert.equal(written?.admitted, rows.length);
  return rows;
}

async function jobOf(db: Db, taskId: string, stepName = 'generate'): Promise<JobRow> {
  const { rows } = await db.query<JobRow>('SELECT * FROM jobs WHERE task_id = $1 AND step_name = $2', [
    taskId,
    stepName,
  ]);
  return rows[0]!;
}

async function reservations(db: Db, jobId: string): Promise<Array<{ id: string; started: boolean }>> {
  const { rows } = await db.query<{ id: string; started: boolean }>(
    'SELECT id::text AS id, started_at IS NOT NULL AS started FROM key_requests WHERE job_id = $1 ORDER BY id',
    [jobId],
  );
  return rows;
}

describeEachDb('fenced side effects of an attempt', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  before(() => {
    db = t.db;
  });

  it("stamps the attempt's requests again as they leave: later only, its own rows only, fenced", async () => {
    const config = fencingConfig();
    const taskId = await submit(db, config, 'restamp', 'a slow start');
    await admit(db, taskId);
    const [job] = await db.transaction((tx) => claimJobs(tx, 'w-restamp', 1, 120_000));
    assert.ok(job && job.task_id === taskId);
    // The claim was 5 s ago (inputs loading, a pool connection awaited), and a row of an earlier
    // attempt of the same job is still in the key's window.
    await db.query(`UPDATE jobs SET started_at = started_at - interval '5 seconds' WHERE id = $1`, [job.id]);
    await db.query(
      `UPDATE key_requests SET started_at = started_at - interval '5 seconds' WHERE job_id = $1`,
      [job.id],
    );
    await db.query(
      `INSERT INTO key_requests (provider, key_id, job_id, admitted_at, started_at)
       VALUES ('main', 'k1', $1, now() - interval '40 seconds', now() - interval '40 seconds')`,
      [job.id],
    );
    const stamps = async () =>
      (
        await db.query<{ earlier: number; mine: number; job: number; now: number }>(
          `SELECT (SELECT extract(epoch FROM min(started_at)) FROM key_requests WHERE job_id = $1)::float8 AS earlier,
                  (SELECT extract(epoch FROM max(started_at)) FROM key_requests WHERE job_id = $1)::float8 AS mine,
                  (SELECT extract(epoch FROM started_at) FROM jobs WHERE id = $1)::float8 AS job,
                  extract(epoch FROM now())::float8 AS now`,
          [job.id],
        )
      ).rows[0]!;
    const before = await stamps();
    assert.ok(before.now - before.mine >= 5);

    // A stale token sends nothing and moves nothing.
    assert.equal(await restampAttemptRequests(db, job.id, job.lease_token - 1), false);
    assert.deepEqual(await stamps().then(({ now: _n, ...r }) => r), (({ now: _n, ...r }) => r)(before));

    assert.equal(await restampAttemptRequests(db, job.id, job.lease_token), true);
    const after = await stamps();
    assert.ok(
      after.mine >= before.now,
      `the request is stamped as leaving now: ${JSON.stringify({ before, after })}`,
    );
    assert.equal(after.job, after.mine, "the job's start moves with it");
    assert.equal(after.earlier, before.earlier, "the earlier attempt's request keeps its stamp");
  });

  it("a stale attempt's cache hit leaves the next attempt's key reservation alone", async () => {
    const config = fencingConfig();
    const held = holdableStorage(localStorage());
    const worker = await startWorker(
      workerContext(db, config, { storage: held.storage }),
      'w-stale',
      'worker',
    );
    try {
      // A first task fills the result cache.
      const first = await submit(db, config, 'cache-a', 'a red fox');
      await admit(db, first);
      await waitFor('the result to be cached', async () => {
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM result_cache');
        return rows[0]!.n > 0;
      });
      await waitFor('the first attempt to end', () => worker.running() === 0);

      // The same call again: the worker's attempt stops while reading the cached image.
      const hold = held.hold('get', (key) => key.startsWith('cache/'));
      const second = await submit(db, config, 'cache-b', 'a red fox');
      await admit(db, second);
      await hold.reached;
      const stale = await jobOf(db, second);
      assert.equal(stale.state, 'running');
      assert.deepEqual(
        (await reservations(db, stale.id)).map((r) => r.started),
        [true],
      );

      // Meanwhile its lease runs out, the reaper puts the job back, and another worker takes it.
      await db.query(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [
        stale.id,
      ]);
      assert.equal((await reapExpiredLeases(db, config, () => 0.5)).requeued, 1);
      await admit(db, second);
      const [next] = await db.transaction((tx) => claimJobs(tx, 'w-other', 1, 120_000));
      assert.equal(next?.id, stale.id);
      assert.equal(next.lease_token, stale.lease_token + 1);
      const before = await reservations(db, stale.id);
      assert.equal(before.length, 2);

      // The stale attempt goes on with its cache hit: it must not touch the new attempt's record.
      hold.release();
      await waitFor('the stale attempt to end', () => worker.running() === 0);
      const afterRows = await reservations(db, stale.id);
      assert.ok(
        afterRows.some((r) => r.id === before[1]!.id),
        `the running attempt's reservation ${before[1]!.id} is still counted: ${JSON.stringify(afterRows)}`,
      );
      const now = await jobOf(db, second);
      assert.equal(now.state, 'running');
      assert.equal(now.worker_id, 'w-other');

      // A cache hit of the attempt that holds the lease releases all of its own reservation.
      const third = await submit(db, config, 'cache-c', 'a red fox');
      await admit(db, third);
      await waitFor(
        'the cache hit to be recorded',
        async () => (await jobOf(db, third)).state === 'succeeded',
      );
      assert.deepEqual(await reservations(db, (await jobOf(db, third)).id), []);
    } finally {
      await worker.stop(0);
    }
  });

  it('saveRemoteRef writes only while the attempt still runs under its token', async () => {
    const config = fencingConfig();
    const taskId = await submit(db, config, 'ref', 'a remote prompt');
    await admit(db, taskId);
    const [job] = (await db.transaction((tx) => claimJobs(tx, 'w-ref', 1, 120_000))).filter(
      (j) => j.task_id === taskId,
    );
    assert.ok(job);
    assert.equal(await saveRemoteRef(db, job.id, job.lease_token, 'prompt-1'), true);
    assert.equal(await saveRemoteRef(db, job.id, job.lease_token + 1, 'prompt-x'), false);
    assert.equal(await db.transaction((tx) => recordCallSuccess(tx, config, job, [])), true);
    // Recorded: the attempt's token is still the job's, but the attempt is over.
    assert.equal(await saveRemoteRef(db, job.id, job.lease_token, 'prompt-2'), false);
    assert.equal((await jobOf(db, taskId)).remote_ref, 'prompt-1');
  });

  it('a job whose admitted key is gone fails with key_unavailable instead of calling with another key', async () => {
    // The scheduler admitted the job to k2; this worker's config has only k1 (k2 was removed).
    const config = fencingConfig({ worker: { maxAttempts: 1 } });
    const inner = createProviders(config, 1).get('main')!;
    const keysUsed: string[] = [];
    const spy: ProviderAdapter = {
      type: inner.type,
      call: (call) => {
        keysUsed.push(call.key.id);
        return inner.call(call);
      },
    };
    const worker = await startWorker(
      workerContext(db, config, { providers: new Map([['main', spy]]) }),
      'w-keys',
      'worker',
    );
    try {
      const taskId = await submit(db, config, 'keys', 'a key that left');
      await admit(db, taskId, 'k2');
      const job = await waitFor('the job to end', async () => {
        const j = await jobOf(db, taskId);
        return j.state === 'failed' || j.state === 'succeeded' ? j : undefined;
      });
      assert.deepEqual(keysUsed, [], 'no provider call with another key');
      assert.equal(job.state, 'failed');
      assert.match(job.error ?? '', /key_unavailable: /);
      const task = await db.query<{ state: string; credits_refunded: number }>(
        'SELECT state, credits_refunded FROM tasks WHERE id = $1',
        [taskId],
      );
      assert.deepEqual(task.rows[0], { state: 'failed', credits_refunded: 1 });
    } finally {
      await worker.stop(0);
    }
  });
});
