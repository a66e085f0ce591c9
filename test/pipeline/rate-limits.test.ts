import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { recordJobFailure, recordPartialSuccess } from '../../src/pipeline/transitions.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import type { Db } from '../../src/store/db.ts';
import { claimJobs } from '../../src/store/attempts.ts';
import type { JobRow } from '../../src/store/jobs.ts';
import { keyRests, providerStates } from '../../src/store/provider-state.ts';
import { writeAdmissions } from '../../src/store/schedule.ts';
import { acquireLeadership } from '../../src/store/leader.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { testConfig } from '../helpers/config.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * What the worker's transitions do with Gemini's quota answers: a per-day quota rests the key
 * (persisted with its reason, visible as rest_until), a 429 without a hint doubles the rest per
 * repeat, rate-limited retries are bounded, and a partly failed batch keeps its images.
 */
const config = testConfig({
  providers: {
    main: {
      type: 'sim',
      concurrency: 20,
      defaultRetryAfterMs: 1000,
      keys: [
        { id: 'k1', rpm: 1000, concurrency: 10 },
        { id: 'k2', rpm: 1000, concurrency: 10 },
      ],
    },
  },
  pipelines: { gen: { steps: [{ name: 'generate', provider: 'main', batchSize: 4 }, { name: 'store' }] } },
  plans: { four: { images: 4, credits: 4 } },
  worker: { maxRateLimitedRetries: 3, maxRateLimitedWaitMs: 600_000 },
});

describeEachDb('rate limits and rests', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  let term: number;
  before(async () => {
    db = t.db;
    term = (await db.transaction((tx) => acquireLeadership(tx, 'leader', 60_000)))!;
  });

  /** A fresh task of one batch of 4, admitted on `key` as 4 requests and claimed. */
  async function runningJob(user: string, key = 'k1'): Promise<JobRow> {
    await db.query(`UPDATE jobs SET state = 'canceled' WHERE state IN ('queued', 'admitted', 'running')`);
    const r = await submitTask(
      db,
      config,
      submitRequest(user, { type: 'gen', plan: 'four', prompt: '', requestHash: 'x' }),
    );
    const { rows } = await db.query<{ id: string }>(`SELECT id FROM jobs WHERE task_id = $1`, [r.body.id]);
    await writeAdmissions(db, 'leader', term, [{ jobId: rows[0]!.id, keyId: key, requests: 4 }]);
    const [job] = await db.transaction((tx) => claimJobs(tx, 'w', 1, 60_000));
    return job!;
  }

  it('an admitted batch of 4 requests logs 4 key requests and holds 4 in flight', async () => {
    const job = await runningJob('cost');
    const { rows } = await db.query<{ n: number; requests: number }>(
      `SELECT (SELECT count(*)::int FROM key_requests WHERE job_id = $1) AS n, (SELECT requests FROM jobs WHERE id = $1) AS requests`,
      [job.id],
    );
    assert.deepEqual(rows[0], { n: 4, requests: 4 });
  });

  it('a per-day quota rests the key with its reason, shown as rest_until', async () => {
    const job = await runningJob('daily');
    const dayMs = 5 * 3_600_000;
    await db.transaction((tx) =>
      recordJobFailure(
        tx,
        config,
        job,
        { kind: 'rate_limited', message: '429', retryAfterMs: dayMs, rest: 'daily quota X exhausted' },
        0.5,
      ),
    );
    const rests = await keyRests(db);
    const k1 = rests.find((r) => r.key_id === 'k1');
    assert.equal(k1?.reason, 'daily quota X exhausted');
    assert.ok(k1!.rest_until.getTime() > Date.now() + dayMs - 60_000);
    const state = (await providerStates(db)).find((s) => s.key_id === 'k1');
    assert.equal(state?.rest_until?.getTime(), k1!.rest_until.getTime());
  });

  it('429s without a retry hint in a row double the key rest', async () => {
    await db.query(`DELETE FROM provider_state`);
    const rests: number[] = [];
    for (let i = 0; i < 3; i++) {
      const job = await runningJob(`unhinted-${i}`, 'k2');
      await db.transaction((tx) =>
        recordJobFailure(tx, config, job, { kind: 'rate_limited', message: '429' }, 0.5),
      );
      const { rows } = await db.query<{ ms: number }>(
        `SELECT (extract(epoch FROM cooldown_until - updated_at) * 1000)::float8 AS ms FROM provider_state WHERE key_id = 'k2'`,
      );
      rests.push(Math.round(rows[0]!.ms / 1000));
    }
    assert.deepEqual(rests, [1, 2, 4], 'defaultRetryAfterMs 1 s, doubled each time');
  });

  it('fails the job as provider_rate_limited past worker.maxRateLimitedRetries, refunding its images', async () => {
    await db.query(`DELETE FROM provider_state`);
    let job = await runningJob('bound');
    for (let i = 1; i <= 4; i++) {
      const result = await db.transaction((tx) =>
        recordJobFailure(tx, config, job, { kind: 'rate_limited', message: '429', retryAfterMs: 1 }, 0.5),
      );
      assert.equal(result.retried, i <= 3, `attempt ${i}`);
      if (i <= 3) {
        await db.query(`UPDATE jobs SET state = 'admitted', key_id = 'k1' WHERE id = $1`, [job.id]);
        [job] = (await db.transaction((tx) => claimJobs(tx, 'w', 1, 60_000))) as [JobRow];
      }
    }
    const { rows } = await db.query<{ error: string; state: string; refunded: number }>(
      `SELECT j.error, t.state, t.credits_refunded AS refunded FROM jobs j JOIN tasks t ON t.id = j.task_id WHERE j.id = $1`,
      [job.id],
    );
    assert.match(rows[0]!.error, /^provider_rate_limited: gave up after 4 rate-limited attempts/);
    assert.equal(rows[0]!.state, 'failed');
    assert.equal(rows[0]!.refunded, 4);
  });

  it('fails at once when every usable key rests past the wait bound (daily quotas on all keys)', async () => {
    await db.query(`DELETE FROM provider_state`);
    const day = { kind: 'rate_limited' as const, message: '429', retryAfterMs: 3_600_000, rest: 'daily' };
    const other = await runningJob('all-rest-1', 'k2');
    await db.transaction((tx) => recordJobFailure(tx, config, other, day, 0.5));
    const job = await runningJob('all-rest-2', 'k1');
    const result = await db.transaction((tx) => recordJobFailure(tx, config, job, day, 0.5));
    assert.equal(result.retried, false);
    const { rows } = await db.query<{ error: string }>(`SELECT error FROM jobs WHERE id = $1`, [job.id]);
    assert.match(rows[0]!.error, /^provider_rate_limited:/);
  });

  it('a batch that partly failed keeps its images for storing and retries only the rest', async () => {
    await db.query(`DELETE FROM provider_state`);
    const job = await runningJob('partial');
    const staged = ['work/a/0.png', 'work/a/1.png'];
    await db.transaction((tx) =>
      recordPartialSuccess(tx, config, job, staged, { kind: 'transient', message: '503' }, 0.5),
    );
    const { rows } = await db.query<{ kind: string; state: string; first_index: number; count: number }>(
      `SELECT kind, state, first_index, count FROM jobs WHERE task_id = $1 ORDER BY kind, first_index`,
      [job.task_id],
    );
    assert.deepEqual(rows, [
      { kind: 'generate', state: 'queued', first_index: 2, count: 2 },
      // The two images that came back are stored by one job (it was one job per image before
      // store jobs held a call's batch, up to the store concurrency).
      { kind: 'store', state: 'queued', first_index: 0, count: 2 },
    ]);
    const input = await db.query<{ input: { keys: string[] } }>(
      `SELECT input FROM jobs WHERE task_id = $1 AND kind = 'store'`,
      [job.task_id],
    );
    assert.deepEqual(input.rows[0]!.input.keys, staged);
  });
});
