import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { cancelTask } from '../../src/pipeline/transitions.ts';
import { submitTask, type SubmitResult } from '../../src/pipeline/submit.ts';
import type { Db, Queryable } from '../../src/store/db.ts';
import { migrate } from '../../src/store/migrate.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { writeSubmits, type SubmitWrite, type SubmitWriteResult } from '../../src/store/submit-write.ts';
import { testConfig } from '../helpers/config.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { submitRequest } from '../helpers/submit-request.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The lock order of the writes that meet a submit (migration 0022): queue_depth before any
 * user's row. Each test holds a transaction open at the point where the old order (0020, and a
 * cancel that refunded before the counter) closes a cycle, on real PostgreSQL connections, and
 * checks the outcome: with one order everywhere nobody gets 40P01 (deadlock_detected) and every
 * write lands. Waits are on pg_blocking_pids, never on time; deadlock_timeout is 50 ms only so
 * that the old order fails fast. PostgreSQL only: PGlite has one connection, nothing to deadlock.
 */

/** A node-postgres connection as the store's Queryable (one session: its transaction is ours). */
function queryable(c: pg.Client): Queryable {
  return {
    async query<R>(sql: string, params?: readonly unknown[]) {
      const r = await c.query(sql, params as unknown[] | undefined);
      return { rows: r.rows as R[], rowCount: r.rowCount ?? 0 };
    },
    async exec(sql: string) {
      await c.query(sql);
    },
  };
}

/** `q`, paused after the first statement matching `pattern` until `resume()`; `paused` says it got there. */
function pausedAfter(q: Queryable, pattern: RegExp) {
  let reached!: () => void;
  let resume!: () => void;
  const paused = new Promise<void>((r) => (reached = r));
  const resumed = new Promise<void>((r) => (resume = r));
  let done = false;
  const wrapped: Queryable = {
    async query<R>(sql: string, params?: readonly unknown[]) {
      const r = await q.query<R>(sql, params);
      if (!done && pattern.test(sql)) {
        done = true;
        reached();
        await resumed;
      }
      return r;
    },
    exec: (sql) => q.exec(sql),
  };
  return { q: wrapped, paused, resume };
}

const settled = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, code: (error as { code?: string }).code, error }),
  );

const positions = (results: SubmitWriteResult[]) =>
  results.map((r) => (r.outcome === 'queued' ? r.position : r.outcome));

describe(
  'lock order of submits against batches and cancels [postgres]',
  { skip: !PG_URL && 'no PostgreSQL answers (set DATABASE_URL)' },
  () => {
    let url: string;
    let drop: () => Promise<void>;
    let db: Db;
    const clients: pg.Client[] = [];

    /** A connection of its own, deadlocks detected after 50 ms (or, `never`, not by it). */
    async function connect(detect: 'fast' | 'never' = 'fast'): Promise<pg.Client> {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`SET deadlock_timeout = '${detect === 'fast' ? '50ms' : '1h'}'`);
      clients.push(c);
      return c;
    }

    before(async () => {
      const created = await createPostgresDatabase();
      url = created.url;
      drop = created.drop;
      db = await createPostgresDb({ url, poolSize: 4 });
      await migrate(db);
    });
    after(async () => {
      for (const c of clients) await c.end().catch(() => {});
      await db.close();
      await drop();
    });

    async function reset(users: Record<string, number>): Promise<void> {
      await db.query('TRUNCATE tasks, rate_limits, users CASCADE');
      await db.query('UPDATE queue_depth SET queued = 0');
      for (const [id, balance] of Object.entries(users))
        await db.query('INSERT INTO users (id, balance) VALUES ($1, $2)', [id, balance]);
    }

    /** Until `pid` waits on a lock another backend holds. */
    async function blocked(admin: pg.Client, pid: number, what: string): Promise<void> {
      await waitFor(
        what,
        async () => {
          const { rows } = await admin.query<{ n: number }>('SELECT cardinality(pg_blocking_pids($1)) AS n', [
            pid,
          ]);
          return rows[0]!.n > 0;
        },
        { intervalMs: 5 },
      );
    }

    const pidOf = async (c: pg.Client) =>
      (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

    /** One submit of 3 credits for `userId` through API key "k1" (a rate row both processes share). */
    function write(userId: string): SubmitWrite {
      const id = uuidv7();
      return {
        task: {
          id,
          userId,
          orderId: null,
          type: 'photography',
          plan: 'free',
          prompt: '',
          inputs: [],
          params: {},
          seed: 1,
          weight: 1,
          imagesTotal: 1,
          creditsCharged: 3,
          stage: 'beautify',
          deadlineSeconds: null,
        },
        jobs: [],
        webhook: undefined,
        estimate: { startAtMs: 0, finishAtMs: 1000 },
        grant: undefined,
        buckets: [`user:${userId}`, 'key:k1'],
        windowStart: new Date('2026-01-01T00:00:00Z'),
        limits: { maxQueued: 100, perUserQueued: 100, userPerMinute: 100, keyPerMinute: 100 },
      };
    }

    it('two API processes send batches over the same two users in opposite orders: neither deadlocks, all four are queued at distinct positions', async () => {
      await reset({ a: 100, b: 100 });
      const admin = await connect();
      const gate = await connect();
      const first = await connect();
      const second = await connect();
      // A transaction holding the queue counter (an admission pass, say) while both batches arrive.
      const [firstPid, secondPid] = [await pidOf(first), await pidOf(second)];
      await gate.query('BEGIN');
      await gate.query('SELECT 1 FROM queue_depth WHERE id = 1 FOR UPDATE');
      const one = settled(writeSubmits(queryable(first), [write('a'), write('b')]));
      await blocked(admin, firstPid, 'the first batch to wait');
      const two = settled(writeSubmits(queryable(second), [write('b'), write('a')]));
      await blocked(admin, secondPid, 'the second batch to wait');
      await gate.query('COMMIT');
      const [r1, r2] = [await one, await two];
      // 0020: the first batch held a, the key's rate row and the counter and waited for b, which
      // the second held while waiting for the key's rate row: 40P01 for one of them.
      assert.deepEqual([r1.ok || r1.code, r2.ok || r2.code], [true, true]);
      const all = [...positions(r1.ok ? r1.value : []), ...positions(r2.ok ? r2.value : [])];
      assert.deepEqual([...all].sort(), [0, 1, 2, 3]);
      const { rows } = await db.query<{ id: string; balance: number }>(
        'SELECT id, balance FROM users ORDER BY id',
      );
      assert.deepEqual(rows, [
        { id: 'a', balance: 94 },
        { id: 'b', balance: 94 },
      ]);
    });

    it('a cancel of a queued task and a batch with that user: neither deadlocks; the refund and both submits land', async () => {
      await reset({ a: 100, b: 100 });
      const [queued] = await writeSubmits(db, [write('b')]);
      assert.equal(queued!.outcome, 'queued');
      const taskId = queued!.outcome === 'queued' ? queued!.task.id : '';
      const admin = await connect();
      const canceler = await connect();
      const submitter = await connect();
      const submitterPid = await pidOf(submitter);
      // The cancel, stopped right after its refund locked b's row (UPDATE users).
      const pause = pausedAfter(queryable(canceler), /UPDATE users SET balance/);
      await canceler.query('BEGIN');
      const cancel = settled(cancelTask(pause.q, taskId, 'canceled by request'));
      await pause.paused;
      const batch = settled(writeSubmits(queryable(submitter), [write('a'), write('b')]));
      await blocked(admin, submitterPid, 'the batch to wait on the cancel');
      pause.resume();
      const c = await cancel;
      await canceler.query(c.ok ? 'COMMIT' : 'ROLLBACK');
      const b = await batch;
      // Before: the batch held the counter (taken at a's item) and waited for b's row; the cancel
      // held b's row (its refund) and waited for the counter (the task leaving the queue).
      assert.deepEqual([c.ok || c.code, b.ok || b.code], [true, true]);
      assert.equal(c.ok && c.value?.state, 'canceled');
      // The cancel committed first (the batch waited on it): the queue is empty again, so 0 and 1.
      assert.deepEqual(positions(b.ok ? b.value : []), [0, 1]);
      const { rows } = await db.query<{ id: string; balance: number }>(
        'SELECT id, balance FROM users ORDER BY id',
      );
      // b: 100 - 3 (the canceled task) + 3 (its refund) - 3 (the new one).
      assert.deepEqual(rows, [
        { id: 'a', balance: 97 },
        { id: 'b', balance: 97 },
      ]);
      assert.equal((await db.query<{ queued: number }>('SELECT queued FROM queue_depth')).rows[0]!.queued, 2);
    });

    it('a batch a deadlock rolls back is sent again one by one, every submit stored, and a warning says so', async () => {
      await reset({ a: 100, b: 100 });
      // The pool's sessions detect deadlocks after 50 ms; the transaction below never does, so the
      // batch is the one rolled back.
      await db.query(`ALTER DATABASE ${new URL(url).pathname.slice(1)} SET deadlock_timeout = '50ms'`);
      const pool = await createPostgresDb({ url, poolSize: 4 });
      const admin = await connect();
      const holder = await connect();
      const wrong = await connect('never');
      const [holderPid, wrongPid] = [await pidOf(holder), await pidOf(wrong)];
      const warnings: Array<{ obj: Record<string, unknown>; msg: string }> = [];
      const log = { warn: (obj: Record<string, unknown>, msg: string) => warnings.push({ obj, msg }) };
      try {
        // a's row held, so that the batch takes the counter and then waits at its first item.
        await holder.query('BEGIN');
        await holder.query(`SELECT 1 FROM users WHERE id = 'a' FOR UPDATE`);
        // A transaction against the lock order: b's row, then the counter.
        await wrong.query('BEGIN');
        await wrong.query(`UPDATE users SET balance = balance WHERE id = 'b'`);
        const config = testConfig({ credits: { initialGrant: 100 } });
        const submits = [submitRequest('a'), submitRequest('b')].map((r) =>
          settled<SubmitResult>(submitTask(pool, config, r, log)),
        );
        await waitFor(
          'the batch to wait on a',
          async () => {
            const { rows } = await admin.query(
              `SELECT 1 FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%darkroom_submit_many%'`,
              [holderPid],
            );
            return rows.length > 0;
          },
          { intervalMs: 5 },
        );
        const counter = wrong.query('UPDATE queue_depth SET queued = queued WHERE id = 1');
        await blocked(admin, wrongPid, 'the wrong-order transaction to wait on the counter');
        // a free: the batch waits on b, which `wrong` holds while it waits on the batch.
        await holder.query('COMMIT');
        await counter;
        await wrong.query('COMMIT');
        const results = await Promise.all(submits);
        assert.deepEqual(results.map((r) => r.ok && r.value.body.position).sort(), [0, 1]);
        assert.deepEqual(
          warnings.map((w) => [w.obj.sqlState, w.obj.submits]),
          [['40P01', 2]],
        );
      } finally {
        await pool.close();
      }
    });
  },
);
