import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { v7 as uuidv7 } from 'uuid';
import { AppError } from '../../src/errors.ts';
import { submitTask, type SubmitResult } from '../../src/pipeline/submit.ts';
import type { Db } from '../../src/store/db.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { writeSubmits, type SubmitWrite } from '../../src/store/submit-write.ts';
import { testConfig } from '../helpers/config.ts';
import { countingDb } from '../helpers/counting-db.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * Group commit of submits (src/pipeline/submit.ts, batcherOf; migration 0020): submits that
 * arrive together are written in one statement, each refused alone, with the limits as exact as
 * one submit a statement and every position distinct. Submits "in one batch" are issued in one
 * tick (the batcher sends what queued in the tick together); the statement counts say they were.
 * Expected values are worked out by hand from the limits in each test.
 */

const request = submitRequest;

const fulfilled = (r: PromiseSettledResult<SubmitResult>) => (r.status === 'fulfilled' ? r.value : undefined);
const errorCode = (r: PromiseSettledResult<SubmitResult>) =>
  r.status === 'rejected' && r.reason instanceof AppError ? r.reason.code : undefined;

describeEachDb('group commit of submits', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  let pool: Db | undefined;
  before(async () => {
    // A pool as large as the submits, so that nothing but the batching puts them together.
    pool = t.url ? await createPostgresDb({ url: t.url, poolSize: 30 }) : undefined;
    db = pool ?? t.db;
  });

  /** Clears tasks and counters between tests, so each one's limits start from zero. */
  async function reset(): Promise<void> {
    await db.query('TRUNCATE tasks, rate_limits CASCADE');
    await db.query('UPDATE queue_depth SET queued = 0');
  }

  it('a key limit of 10 lets exactly 10 of 30 submits of one batch through; the other 20 are 429 rate_limited on the key', async () => {
    await reset();
    const config = testConfig({
      credits: { initialGrant: 100 },
      limits: { keySubmitsPerMinute: 10 },
    });
    const statements: string[] = [];
    const counted = countingDb(db, statements);
    const now = new Date();
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) =>
        submitTask(counted, config, request(`kb-${i}`, { keyId: 'key-batch', now })),
      ),
    );
    // One batch: its basis read and its write.
    assert.equal(statements.length, 2, statements.join('\n---\n'));
    const accepted = results.map(fulfilled).filter((r) => r !== undefined);
    assert.equal(accepted.length, 10);
    // The first ten in the batch's order, which is the order they were sent in.
    assert.deepEqual(
      results.slice(0, 10).map((r) => r.status),
      Array.from({ length: 10 }, () => 'fulfilled'),
    );
    const refused = results.slice(10);
    assert.ok(refused.every((r) => errorCode(r) === 'rate_limited'));
    assert.ok(
      refused.every(
        (r) =>
          r.status === 'rejected' &&
          (r.reason as AppError).message.includes('limits.keySubmitsPerMinute') &&
          (r.reason as AppError).retryAfterSeconds !== undefined,
      ),
    );
    // Positions: the queue held nothing, so 0..9, one each.
    assert.deepEqual(
      accepted.map((r) => r.body.position).sort((a, b) => a - b),
      Array.from({ length: 10 }, (_, i) => i),
    );
    const { rows } = await db.query<Record<string, number>>(
      `SELECT (SELECT count(*)::int FROM tasks) AS tasks,
              (SELECT count(*)::int FROM jobs) AS jobs,
              (SELECT count(*)::int FROM events) AS events,
              (SELECT count(*)::int FROM credit_ledger WHERE reason = 'charge' AND user_id LIKE 'kb-%') AS charges,
              (SELECT count FROM rate_limits WHERE bucket = 'key:key-batch') AS key_window,
              (SELECT queued FROM queue_depth) AS depth,
              (SELECT count(DISTINCT position)::int FROM task_forecasts) AS positions`,
    );
    // The refused 20 kept nothing: no task, charge, event, or count (their users' grants stay).
    assert.deepEqual(rows[0], {
      tasks: 10,
      jobs: 10,
      events: 10,
      charges: 10,
      key_window: 10,
      depth: 10,
      positions: 10,
    });
  });

  it('a balance-short submit in the middle of a batch is refused alone; the others get positions 0..4 in order', async () => {
    await reset();
    // 10 credits, 3 a task: a user's first three fit, the fourth is 1 credit short.
    const config = testConfig({
      credits: { initialGrant: 10 },
      plans: { free: { images: 2, credits: 3, weight: 1 } },
    });
    const users = ['bs-a', 'bs-poor', 'bs-poor', 'bs-poor', 'bs-poor', 'bs-b'];
    const statements: string[] = [];
    const counted = countingDb(db, statements);
    const results = await Promise.allSettled(users.map((u) => submitTask(counted, config, request(u))));
    assert.equal(statements.length, 2, statements.join('\n---\n'));
    assert.deepEqual(
      results.map((r) => fulfilled(r)?.body.position ?? errorCode(r)),
      [0, 1, 2, 3, 'insufficient_credits', 4],
    );
    const { rows } = await db.query<{ id: string; balance: number; tasks: number }>(
      `SELECT u.id, u.balance, (SELECT count(*)::int FROM tasks t WHERE t.user_id = u.id) AS tasks
         FROM users u WHERE u.id LIKE 'bs-%' ORDER BY u.id`,
    );
    assert.deepEqual(rows, [
      { id: 'bs-a', balance: 7, tasks: 1 },
      { id: 'bs-b', balance: 7, tasks: 1 },
      { id: 'bs-poor', balance: 1, tasks: 3 },
    ]);
    assert.equal((await db.query<{ queued: number }>('SELECT queued FROM queue_depth')).rows[0]!.queued, 5);
  });

  it('the same order twice in one batch: one task, the second answer is the first task, deduplicated', async () => {
    await reset();
    const config = testConfig({ credits: { initialGrant: 100 } });
    const [a, b] = await Promise.all([
      submitTask(db, config, request('dup-user', { orderId: 'order-1' })),
      submitTask(db, config, request('dup-user', { orderId: 'order-1' })),
    ]);
    const answers = [a, b].sort((x, y) => x.status - y.status);
    assert.equal(answers[0]!.status, 200);
    assert.equal(answers[0]!.body.deduplicated, true);
    assert.equal(answers[1]!.status, 202);
    assert.equal(answers[0]!.body.id, answers[1]!.body.id);
    const { rows } = await db.query<{ tasks: number; balance: number }>(
      `SELECT (SELECT count(*)::int FROM tasks WHERE user_id = 'dup-user') AS tasks,
              (SELECT balance FROM users WHERE id = 'dup-user') AS balance`,
    );
    // Free costs 2 credits (test/helpers/config.ts): charged once.
    assert.deepEqual(rows[0], { tasks: 1, balance: 98 });
  });

  it('in one statement, the second item of an order sees the first and writes nothing', async () => {
    await reset();
    const write = (id: string): SubmitWrite => ({
      task: {
        id,
        userId: 'dup-store',
        orderId: 'order-2',
        type: 'photography',
        plan: 'free',
        prompt: '',
        inputs: [],
        params: {},
        seed: 1,
        weight: 1,
        imagesTotal: 1,
        creditsCharged: 1,
        stage: 'beautify',
        deadlineSeconds: null,
      },
      jobs: [],
      webhook: undefined,
      estimate: { startAtMs: Date.now(), finishAtMs: Date.now() + 1000 },
      grant: 5,
      buckets: ['user:dup-store'],
      windowStart: new Date(),
      limits: { maxQueued: 100, perUserQueued: 100, userPerMinute: 100, keyPerMinute: 100 },
    });
    const first = uuidv7();
    const results = await writeSubmits(db, [write(first), write(uuidv7())]);
    assert.deepEqual(
      results.map((r) => r.outcome),
      ['queued', 'order_taken'],
    );
    assert.equal(results[0]!.outcome === 'queued' && results[0]!.task.id, first);
    const { rows } = await db.query<{ balance: number; window_count: number }>(
      `SELECT (SELECT balance FROM users WHERE id = 'dup-store') AS balance,
              (SELECT count FROM rate_limits WHERE bucket = 'user:dup-store') AS window_count`,
    );
    assert.deepEqual(rows[0], { balance: 4, window_count: 1 });
  });

  it('a submit the database cannot store fails alone: the batch is sent again one by one', async () => {
    await reset();
    const config = testConfig({ credits: { initialGrant: 100 } });
    // PostgreSQL text cannot hold U+0000: the batch's JSON parameter is refused as a whole.
    const results = await Promise.allSettled([
      submitTask(db, config, request('bad-a')),
      submitTask(db, config, request('bad-nul', { prompt: 'a\u0000b' })),
      submitTask(db, config, request('bad-b')),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.ok(!((results[1] as PromiseRejectedResult).reason instanceof AppError));
    const { rows } = await db.query<{ user_id: string }>(`SELECT user_id FROM tasks ORDER BY user_id`);
    assert.deepEqual(
      rows.map((r) => r.user_id),
      ['bad-a', 'bad-b'],
    );
    await pool?.close();
  });
});
