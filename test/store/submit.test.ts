import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import pg from 'pg';
import { AppError } from '../../src/errors.ts';
import { submitTask, type SubmitRequest } from '../../src/pipeline/submit.ts';
import type { Db } from '../../src/store/db.ts';
import { getBalance } from '../../src/store/credits.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { testConfig } from '../helpers/config.ts';

function request(overrides: Partial<SubmitRequest> = {}): SubmitRequest {
  return {
    userId: 'alice',
    orderId: undefined,
    type: 'photography',
    plan: 'free',
    prompt: 'portrait',
    inputs: [],
    params: {},
    deadlineSeconds: undefined,
    idempotencyKey: undefined,
    requestHash: 'h1',
    ...overrides,
  };
}

async function count(db: Db, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await db.query<{ n: number }>(sql, params);
  return rows[0]!.n;
}

async function rejects(promise: Promise<unknown>, code: string): Promise<AppError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof AppError, `expected an AppError, got ${String(error)}`);
  assert.equal(error.code, code);
  return error;
}

describeEachDb('submit', (kind) => {
  const t = useTestDb(kind);
  const config = testConfig({ credits: { initialGrant: 100 }, limits: { maxQueuedTasks: 50 } });
  let db: Db;
  before(() => {
    db = t.db;
  });

  it('stores the task, its first jobs and a queued event, and charges the plan once', async () => {
    const result = await submitTask(db, config, request({ userId: 'u-basic', plan: 'start' }));
    assert.equal(result.status, 202);
    assert.equal(result.body.state, 'queued');
    assert.equal(result.body.images_total, 30);
    assert.equal(result.body.credits_charged, 30);
    assert.equal(typeof result.body.eta_seconds, 'number');
    assert.equal(await getBalance(db, 'u-basic'), 70);
    // photography starts with one beautify call; generate batches come after it.
    assert.equal(
      await count(db, `SELECT count(*)::int AS n FROM jobs WHERE task_id = $1 AND kind = 'transform'`, [
        result.body.id,
      ]),
      1,
    );
    assert.equal(
      await count(db, `SELECT count(*)::int AS n FROM events WHERE task_id = $1 AND type = 'queued'`, [
        result.body.id,
      ]),
      1,
    );
    assert.equal(
      await count(
        db,
        `SELECT count(*)::int AS n FROM credit_ledger WHERE user_id = 'u-basic' AND reason IN ('grant', 'charge')`,
      ),
      2,
    );
  });

  it('ten concurrent submits for one order make exactly one task and one charge', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        submitTask(db, config, request({ userId: 'u-order', orderId: 'order-1', requestHash: `h${i}` })),
      ),
    );
    const ids = new Set(results.map((r) => r.body.id));
    assert.equal(ids.size, 1);
    assert.equal(results.filter((r) => r.status === 202).length, 1);
    assert.equal(results.filter((r) => r.body.deduplicated === true).length, 9);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE user_id = 'u-order'`), 1);
    assert.equal(
      await count(
        db,
        `SELECT count(*)::int AS n FROM credit_ledger WHERE user_id = 'u-order' AND reason = 'charge'`,
      ),
      1,
    );
    assert.equal(await getBalance(db, 'u-order'), 98);
  });

  it('replays an Idempotency-Key, refuses it with another body, and stores one task', async () => {
    const first = await submitTask(
      db,
      config,
      request({ userId: 'u-idem', idempotencyKey: 'key-1', requestHash: 'A' }),
    );
    const again = await submitTask(
      db,
      config,
      request({ userId: 'u-idem', idempotencyKey: 'key-1', requestHash: 'A' }),
    );
    assert.deepEqual(again, first);
    await rejects(
      submitTask(db, config, request({ userId: 'u-idem', idempotencyKey: 'key-1', requestHash: 'B' })),
      'idempotency_key_reused',
    );
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE user_id = 'u-idem'`), 1);
  });

  if (kind === 'postgres') {
    it('answers 409 while a request with the same Idempotency-Key is in flight', async () => {
      const holder = new pg.Client({ connectionString: t.url });
      await holder.connect();
      try {
        await holder.query('BEGIN');
        await holder.query(
          `SELECT pg_advisory_xact_lock(hashtextextended('darkroom:idempotency:' || $1, 0))`,
          ['key-busy'],
        );
        const error = await rejects(
          submitTask(db, config, request({ userId: 'u-busy', idempotencyKey: 'key-busy' })),
          'idempotency_key_in_flight',
        );
        assert.equal(error.httpStatus, 409);
        await holder.query('ROLLBACK');
      } finally {
        await holder.end();
      }
      const after = await submitTask(db, config, request({ userId: 'u-busy', idempotencyKey: 'key-busy' }));
      assert.equal(after.status, 202);
    });
  }

  it('refuses with 402 when credits are short, storing and charging nothing', async () => {
    const poor = testConfig({ credits: { initialGrant: 10 } });
    const error = await rejects(
      submitTask(db, poor, request({ userId: 'u-poor', plan: 'pro' })),
      'insufficient_credits',
    );
    assert.equal(error.httpStatus, 402);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE user_id = 'u-poor'`), 0);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM credit_ledger WHERE user_id = 'u-poor'`), 0);
    assert.equal(await getBalance(db, 'u-poor'), undefined);
  });

  it('refuses with 429 queue_full over maxQueuedTasks, storing and charging nothing', async () => {
    const queued = await count(db, `SELECT count(*)::int AS n FROM tasks WHERE state = 'queued'`);
    const small = testConfig({ credits: { initialGrant: 100 }, limits: { maxQueuedTasks: queued + 1 } });
    await submitTask(db, small, request({ userId: 'u-full' }));
    const error = await rejects(submitTask(db, small, request({ userId: 'u-full' })), 'queue_full');
    assert.equal(error.httpStatus, 429);
    assert.ok(error.retryAfterSeconds && error.retryAfterSeconds > 0);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE user_id = 'u-full'`), 1);
    assert.equal(await getBalance(db, 'u-full'), 98);
  });

  it('rejects an unknown type or plan before touching the database', async () => {
    await rejects(submitTask(db, config, request({ userId: 'u-bad', type: 'nope' })), 'unknown_type');
    await rejects(submitTask(db, config, request({ userId: 'u-bad', plan: 'gold' })), 'unknown_plan');
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE user_id = 'u-bad'`), 0);
  });

  it('starts a new task for an order once the previous one has ended', async () => {
    const first = await submitTask(db, config, request({ userId: 'u-reorder', orderId: 'o-2' }));
    await db.query(`UPDATE tasks SET state = 'failed', finished_at = now() WHERE id = $1`, [first.body.id]);
    const second = await submitTask(db, config, request({ userId: 'u-reorder', orderId: 'o-2' }));
    assert.notEqual(second.body.id, first.body.id);
    assert.equal(second.status, 202);
  });
});
