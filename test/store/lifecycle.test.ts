import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { finishIfDone, recordCallSuccess, recordJobFailure } from '../../src/pipeline/transitions.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import type { Db } from '../../src/store/db.ts';
import { claimJobs } from '../../src/store/attempts.ts';
import type { JobRow } from '../../src/store/jobs.ts';
import { acquireLeadership, currentLeader } from '../../src/store/leader.ts';
import { writeAdmissions } from '../../src/store/schedule.ts';
import { refundTask } from '../../src/store/credits.ts';
import { findExpiredUploads, insertUpload } from '../../src/store/uploads.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { testConfig } from '../helpers/config.ts';

const config = testConfig({
  pipelines: { gen: { steps: [{ name: 'generate', provider: 'main', batchSize: 1 }, { name: 'store' }] } },
});

async function newTask(db: Db, userId: string, plan = 'start'): Promise<string> {
  const r = await submitTask(db, config, {
    userId,
    orderId: undefined,
    type: 'gen',
    plan,
    prompt: '',
    inputs: [],
    params: {},
    deadlineSeconds: undefined,
    idempotencyKey: undefined,
    requestHash: 'x',
  });
  return r.body.id;
}

async function admitAll(db: Db, taskId: string): Promise<void> {
  // Each test works on its own task: leftovers of earlier tests must not be claimable.
  await db.query(
    `UPDATE jobs SET state = 'canceled' WHERE task_id <> $1 AND state IN ('queued', 'admitted')`,
    [taskId],
  );
  await db.query(
    `UPDATE jobs SET state = 'admitted', key_id = 'k1', admitted_at = now() WHERE task_id = $1 AND state = 'queued'`,
    [taskId],
  );
}

describeEachDb('job lifecycle', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  before(() => {
    db = t.db;
  });

  it('claims exactly the number of jobs asked for, each with a new lease token', async () => {
    const taskId = await newTask(db, 'claim-1'); // 30 images in batches of 1: 30 jobs
    await admitAll(db, taskId);
    const jobs = await db.transaction((tx) => claimJobs(tx, 'w1', 3, 10_000));
    assert.equal(jobs.length, 3);
    for (const j of jobs) {
      assert.equal(j.state, 'running');
      assert.equal(j.lease_token, 1);
      assert.equal(j.attempts, 1);
      assert.equal(j.worker_id, 'w1');
    }
    const running = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM jobs WHERE task_id = $1 AND state = 'running'`,
      [taskId],
    );
    assert.equal(running.rows[0]!.n, 3);
  });

  it('lets concurrent claimers share admitted jobs without claiming any twice', async () => {
    const taskId = await newTask(db, 'claim-2');
    await admitAll(db, taskId);
    const batches = await Promise.all(
      Array.from({ length: 8 }, (_, i) => db.transaction((tx) => claimJobs(tx, `w${i}`, 5, 10_000))),
    );
    const ids = batches
      .flat()
      .filter((j) => j.task_id === taskId)
      .map((j) => j.id);
    assert.equal(ids.length, 30);
    assert.equal(new Set(ids).size, 30);
  });

  it('fences outcomes by lease token: a stale attempt cannot finish a job another worker now runs', async () => {
    const taskId = await newTask(db, 'fence', 'free');
    await admitAll(db, taskId);
    const [first] = (await db.transaction((tx) => claimJobs(tx, 'w-old', 1, 10_000))) as [JobRow];
    // The old worker goes silent: its lease runs out and the reaper puts the job back.
    await db.query(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [
      first.id,
    ]);
    const reaped = await db.transaction((tx) =>
      recordJobFailure(tx, config, first, { kind: 'transient', message: 'lease expired' }, 0),
    );
    assert.deepEqual(reaped, { recorded: true, retried: true });
    await db.query(`UPDATE jobs SET run_after = now() WHERE id = $1`, [first.id]);
    await admitAll(db, taskId);
    const claimed = await db.transaction((tx) => claimJobs(tx, 'w-new', 5, 10_000));
    const second = claimed.find((j) => j.id === first.id)!;
    assert.equal(second.lease_token, first.lease_token + 1);
    assert.equal(await db.transaction((tx) => recordCallSuccess(tx, config, first, ['work/x/0.png'])), false);
    assert.equal(await db.transaction((tx) => recordCallSuccess(tx, config, second, ['work/x/0.png'])), true);
    const row = await db.query<{ state: string; output: { keys: string[] } }>(
      'SELECT state, output FROM jobs WHERE id = $1',
      [first.id],
    );
    assert.equal(row.rows[0]!.state, 'succeeded');
  });

  it('ends a task with every image failed as failed, refunded in full exactly once', async () => {
    const taskId = await newTask(db, 'refund', 'free');
    await admitAll(db, taskId);
    const jobs = await db.transaction((tx) => claimJobs(tx, 'w', 10, 10_000));
    for (const job of jobs.filter((j) => j.task_id === taskId)) {
      await db.transaction((tx) =>
        recordJobFailure(tx, config, job, { kind: 'permanent', message: 'refused' }, 0),
      );
    }
    await db.transaction((tx) => finishIfDone(tx, taskId)); // a second finish changes nothing
    assert.equal(await db.transaction((tx) => refundTask(tx, 'refund', taskId, 2)), 0);
    const task = await db.query<{ state: string; credits_refunded: number; images_failed: number }>(
      'SELECT state, credits_refunded, images_failed FROM tasks WHERE id = $1',
      [taskId],
    );
    assert.deepEqual(task.rows[0], { state: 'failed', credits_refunded: 2, images_failed: 2 });
    const ledger = await db.query<{ n: number; sum: number }>(
      `SELECT count(*)::int AS n, sum(delta)::int AS sum FROM credit_ledger WHERE task_id = $1 AND reason = 'refund'`,
      [taskId],
    );
    assert.deepEqual(ledger.rows[0], { n: 1, sum: 2 });
    const balance = await db.query<{ balance: number }>(`SELECT balance FROM users WHERE id = 'refund'`);
    assert.equal(balance.rows[0]!.balance, 1000);
  });

  it('elects one scheduler, hands over after the lease lapses, and fences the old term', async () => {
    const a = await acquireLeadership(db, 'A', 60_000);
    assert.equal(typeof a, 'number');
    assert.equal(await acquireLeadership(db, 'B', 60_000), undefined);
    assert.equal(await acquireLeadership(db, 'A', 60_000), a, 'renewal keeps the term');
    await db.query(`UPDATE scheduler_leader SET expires_at = now() - interval '1 second'`);
    const b = await acquireLeadership(db, 'B', 60_000);
    assert.equal(b, a! + 1);
    assert.equal((await currentLeader(db))?.holder, 'B');
    const taskId = await newTask(db, 'fenced', 'free');
    const job = await db.query<{ id: string }>(`SELECT id FROM jobs WHERE task_id = $1 LIMIT 1`, [taskId]);
    const stale = await writeAdmissions(db, 'A', a!, [{ jobId: job.rows[0]!.id, keyId: 'k1' }]);
    assert.equal(stale, undefined);
    const state = await db.query<{ state: string }>('SELECT state FROM jobs WHERE id = $1', [
      job.rows[0]!.id,
    ]);
    assert.equal(state.rows[0]!.state, 'queued');
    const fresh = await writeAdmissions(db, 'B', b!, [{ jobId: job.rows[0]!.id, keyId: 'k1' }]);
    assert.equal(fresh?.admitted, 1);
    assert.deepEqual(fresh?.startedTasks, [taskId]);
    const logged = await db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM key_requests WHERE job_id = $1',
      [job.rows[0]!.id],
    );
    assert.equal(logged.rows[0]!.n, 1, 'the call is logged against its key');
    const running = await db.query<{ type: string }>(
      `SELECT type FROM events WHERE task_id = $1 AND type = 'running'`,
      [taskId],
    );
    assert.equal(running.rowCount, 1, 'the running event is written with the admission');
  });

  it('expires old uploads, but never one a queued or running task still uses', async () => {
    const upload = (id: string) => ({
      id,
      storage_key: `uploads/${id}.png`,
      mime: 'image/png',
      width: 1,
      height: 1,
      bytes: 1,
      sha256: 'x',
    });
    await insertUpload(db, upload('old-unused'));
    await insertUpload(db, upload('old-used'));
    await insertUpload(db, upload('fresh'));
    await db.query(`UPDATE uploads SET created_at = now() - interval '100 hours' WHERE id LIKE 'old-%'`);
    const r = await submitTask(db, config, {
      userId: 'uploader',
      orderId: undefined,
      type: 'gen',
      plan: 'free',
      prompt: '',
      inputs: [
        {
          role: 'input',
          upload_id: 'old-used',
          storage_key: 'uploads/old-used.png',
          mime: 'image/png',
          sha256: 'x',
        },
      ],
      params: {},
      deadlineSeconds: undefined,
      idempotencyKey: undefined,
      requestHash: 'u',
    });
    assert.equal(r.status, 202);
    const expired = await findExpiredUploads(db, 72, 100);
    assert.deepEqual(
      expired.map((u) => u.id),
      ['old-unused'],
    );
    await db.query(`UPDATE tasks SET state = 'succeeded' WHERE id = $1`, [r.body.id]);
    const later = await findExpiredUploads(db, 72, 100);
    assert.deepEqual(later.map((u) => u.id).sort(), ['old-unused', 'old-used']);
  });
});
