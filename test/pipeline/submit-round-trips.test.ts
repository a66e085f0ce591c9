import assert from 'node:assert/strict';
import { it } from 'node:test';
import { AppError } from '../../src/errors.ts';
import { submitTask, type SubmitRequest } from '../../src/pipeline/submit.ts';
import { testConfig } from '../helpers/config.ts';
import { countingDb } from '../helpers/counting-db.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * A submit holds a database connection (on the embedded database, the only one) for as many
 * round trips as it makes; at hundreds of submits a second those round trips are the queue
 * (docs/benchmarks.md: the request path under load). Counted here, with everything a submit
 * writes checked row by row, so merging statements cannot lose a write.
 */

const request = (userId: string, extra: Partial<SubmitRequest> = {}): SubmitRequest =>
  submitRequest(userId, { prompt: 'p', ...extra });

describeEachDb('submit round trips', (kind) => {
  const t = useTestDb(kind);
  const config = testConfig({
    credits: { initialGrant: 10 },
    plans: { free: { images: 2, credits: 3, weight: 1 } },
  });

  it('a new user’s submit makes two statements, no transaction, and writes the task, jobs, event, estimate, grant, charge and counters', async () => {
    const statements: string[] = [];
    const { body } = await submitTask(countingDb(t.db, statements, { markTransactions: true }), config, {
      ...request('rt-new', { keyId: null }),
      webhook: { url: 'https://hooks.example/x', stages: true },
    });
    // The estimate's basis, then every write in one statement the server commits by itself:
    // no BEGIN or COMMIT round trips, and the shared counter rows never held across one.
    assert.equal(statements.length, 2, statements.join('\n---\n'));
    assert.ok(!statements.includes('BEGIN'));
    const { rows } = await t.db.query<Record<string, unknown>>(
      `SELECT t.state, t.webhook_url, t.webhook_stages, u.balance,
              (SELECT count(*)::int FROM jobs j WHERE j.task_id = t.id AND j.state = 'queued') AS jobs,
              (SELECT string_agg(type, ',') FROM events e WHERE e.task_id = t.id) AS events,
              (SELECT basis FROM task_forecasts f WHERE f.task_id = t.id) AS basis,
              (SELECT string_agg(reason || ':' || delta, ',' ORDER BY id) FROM credit_ledger l WHERE l.user_id = t.user_id) AS ledger,
              (SELECT count FROM rate_limits WHERE bucket = 'user:rt-new') AS window_count
         FROM tasks t JOIN users u ON u.id = t.user_id WHERE t.id = $1`,
      [body.id],
    );
    // Photography's first step (beautify) is one call.
    assert.deepEqual(rows[0], {
      state: 'queued',
      webhook_url: 'https://hooks.example/x',
      webhook_stages: true,
      balance: 7,
      jobs: 1,
      events: 'queued',
      basis: 'submit',
      ledger: 'grant:10,charge:-3',
      window_count: 1,
    });
  });

  it('submits that arrive together are one batch: one basis read and one write for all of them', async () => {
    const statements: string[] = [];
    const db = countingDb(t.db, statements, { markTransactions: true });
    // Twenty submits in one tick, none waiting on another: the group commit sends them together
    // (at most SUBMIT_BATCH_MAX, 32, a statement).
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => submitTask(db, config, request(`rt-batch-${i}`))),
    );
    assert.equal(statements.length, 2, statements.join('\n---\n'));
    assert.deepEqual(
      results.map((r) => r.status),
      Array.from({ length: 20 }, () => 202),
    );
    const { rows } = await t.db.query<{ tasks: number; jobs: number; charges: number }>(
      `SELECT (SELECT count(*)::int FROM tasks WHERE user_id LIKE 'rt-batch-%') AS tasks,
              (SELECT count(*)::int FROM jobs WHERE user_id LIKE 'rt-batch-%') AS jobs,
              (SELECT count(*)::int FROM credit_ledger WHERE user_id LIKE 'rt-batch-%' AND reason = 'charge') AS charges`,
    );
    assert.deepEqual(rows[0], { tasks: 20, jobs: 20, charges: 20 });
  });

  it('a refused charge writes nothing: no task, no jobs, no event, no counters', async () => {
    const before = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks');
    // 10 credits, 3 a task: three fit, the fourth does not.
    for (let i = 0; i < 3; i++) await submitTask(t.db, config, request('rt-poor'));
    await assert.rejects(submitTask(t.db, config, request('rt-poor')), (e: unknown) => {
      return e instanceof AppError && e.code === 'insufficient_credits';
    });
    const after = await t.db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks');
    assert.equal(after.rows[0]!.n, before.rows[0]!.n + 3);
    const { rows } = await t.db.query<{ balance: number; window_count: number }>(
      `SELECT balance, (SELECT count FROM rate_limits WHERE bucket = 'user:rt-poor') AS window_count FROM users WHERE id = 'rt-poor'`,
    );
    assert.deepEqual(rows[0], { balance: 1, window_count: 3 });
  });

  it('with an Idempotency-Key, one transaction: key lock, replay read, basis, the write, the stored answer', async () => {
    const statements: string[] = [];
    const first = await submitTask(countingDb(t.db, statements, { markTransactions: true }), config, {
      ...request('rt-idem'),
      idempotencyKey: 'rt-key',
    });
    assert.equal(statements.length, 6, statements.join('\n---\n'));
    assert.equal(statements[0], 'BEGIN');
    const again = await submitTask(t.db, config, { ...request('rt-idem'), idempotencyKey: 'rt-key' });
    assert.deepEqual(again, first);
  });

  it('a submit over a limit writes nothing and keeps no count', async () => {
    const limited = testConfig({
      credits: { initialGrant: 100 },
      plans: { free: { images: 2, credits: 3, weight: 1 } },
      limits: { userSubmitsPerMinute: 2 },
    });
    for (let i = 0; i < 2; i++) await submitTask(t.db, limited, request('rt-rate'));
    await assert.rejects(submitTask(t.db, limited, request('rt-rate')), (e: unknown) => {
      return e instanceof AppError && e.code === 'rate_limited' && e.retryAfterSeconds !== undefined;
    });
    const { rows } = await t.db.query<Record<string, number>>(
      `SELECT (SELECT count(*)::int FROM tasks WHERE user_id = 'rt-rate') AS tasks,
              (SELECT balance FROM users WHERE id = 'rt-rate') AS balance,
              (SELECT count(*)::int FROM credit_ledger WHERE user_id = 'rt-rate') AS ledger,
              (SELECT count FROM rate_limits WHERE bucket = 'user:rt-rate') AS window_count`,
    );
    assert.deepEqual(rows[0], { tasks: 2, balance: 94, ledger: 3, window_count: 2 });
  });
});
