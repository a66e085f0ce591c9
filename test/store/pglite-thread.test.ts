import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isConnectionError, sqlState, type Db } from '../../src/store/db.ts';
import { createPgliteDb } from '../../src/store/pglite.ts';
import { createPgliteThreadDb } from '../../src/store/pglite-thread.ts';
import { tempDir } from '../helpers/config.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * What the worker-thread PGlite must keep of the in-process one it replaces: every value and
 * error field a caller reads, transactions that nothing else interleaves with, NOTIFY — and
 * what only a thread can do wrong: answers matched to the wrong statement, a close or a dead
 * thread leaving callers waiting. The in-process PGlite (PGlite's own code) is the reference.
 */

/** A promise and the function that settles it, to hold a transaction open at a chosen point. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Whether `p` has settled by the time the thread has answered everything sent before `probe`. */
async function settledBy<T>(p: Promise<T>, probe: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await probe;
  // The thread's answers arrive in order; one turn of the event loop lets p's callbacks run.
  await new Promise((r) => setImmediate(r));
  return settled;
}

const SCHEMA = `
  CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL CHECK (name <> ''), n int NOT NULL DEFAULT 0);
  CREATE TABLE counter (id int PRIMARY KEY, n int NOT NULL);
  INSERT INTO counter VALUES (1, 0);`;

describe('PGlite in a worker thread', () => {
  let thread: Db;
  let inProcess: Db;
  before(async () => {
    [thread, inProcess] = await Promise.all([createPgliteThreadDb(undefined), createPgliteDb(undefined)]);
    await thread.exec(SCHEMA);
    await inProcess.exec(SCHEMA);
  });
  after(async () => {
    await thread?.close();
    await inProcess?.close();
  });

  it('returns the values the in-process PGlite returns, of every type the schema uses', async () => {
    const sql = `SELECT 1::int AS i, 2::int8 AS big, 1.5::float8 AS f, 2.25::numeric AS num, true AS b,
      'x'::text AS t, NULL::text AS nothing, '2026-01-02T03:04:05.678Z'::timestamptz AS at,
      '{"a":[1,{"b":null}],"c":"d"}'::jsonb AS j, '{"k":1}'::json AS js, ARRAY[1,2]::int[] AS ints,
      ARRAY['a','b']::text[] AS texts, '\\x00ff10'::bytea AS bytes, gen_random_uuid() IS NOT NULL AS has_uuid,
      $1::text AS p_text, $2::int AS p_int, $3::jsonb AS p_json, $4::timestamptz AS p_at`;
    const params = ['param', 42, JSON.stringify({ q: [1, 2] }), new Date('2026-05-06T07:08:09.010Z')];
    const [a, b] = await Promise.all([thread.query(sql, params), inProcess.query(sql, params)]);
    assert.deepEqual(a, b);
    assert.ok(a.rows[0]!.at instanceof Date);
    assert.ok(a.rows[0]!.bytes instanceof Uint8Array);
  });

  it('counts rows as node-postgres does: returned by a SELECT, changed by a write', async () => {
    for (const db of [thread, inProcess]) {
      await db.exec('DELETE FROM items');
      const inserted = await db.query(`INSERT INTO items (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
      const updated = await db.query(`UPDATE items SET n = n + 1 WHERE id < 3`);
      const selected = await db.query(`SELECT * FROM items`);
      const none = await db.query(`SELECT * FROM items WHERE id < 0`);
      assert.deepEqual(
        [inserted.rowCount, updated.rowCount, selected.rowCount, none.rowCount],
        [3, 2, 3, 0],
        db === thread ? 'thread' : 'in-process',
      );
    }
  });

  it('answers every one of many concurrent statements with its own result', async () => {
    const n = 300;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        thread.query<{ v: number; s: string }>('SELECT $1::int AS v, $2::text AS s', [i, `s${i}`]),
      ),
    );
    results.forEach((r, i) => assert.deepEqual(r.rows, [{ v: i, s: `s${i}` }]));
  });

  it('keeps the SQLSTATE and every field of an error (unique, check, raise with detail)', async () => {
    await thread.exec(`DELETE FROM items; INSERT INTO items (id, name) VALUES (1, 'a')`);
    await inProcess.exec(`DELETE FROM items; INSERT INTO items (id, name) VALUES (1, 'a')`);
    const statements = [
      `INSERT INTO items (id, name) VALUES (1, 'again')`,
      `INSERT INTO items (id, name) VALUES (2, '')`,
      `DO $$ BEGIN RAISE EXCEPTION 'over a limit' USING ERRCODE = 'DR002', DETAIL = '{"ahead":3}', HINT = 'wait'; END $$`,
      `SELECT * FROM no_such_table`,
      `SELEC 1`,
    ];
    const fields = [
      'code',
      'message',
      'detail',
      'hint',
      'constraint',
      'table',
      'schema',
      'severity',
      'routine',
    ] as const;
    for (const sql of statements) {
      const [a, b] = (await Promise.all([
        thread.query(sql).then(
          () => assert.fail(`no error from ${sql}`),
          (e: unknown) => e,
        ),
        inProcess.query(sql).then(
          () => assert.fail(`no error from ${sql}`),
          (e: unknown) => e,
        ),
      ])) as [Record<string, unknown>, Record<string, unknown>];
      assert.ok(a instanceof Error, sql);
      for (const f of fields) assert.equal(a[f], b[f], `${f} of ${sql}`);
      assert.equal(isConnectionError(a), false, sql);
    }
    // Spelled out once, from the PostgreSQL manual's error codes (unique_violation) and its message.
    const dup = (await thread.query(statements[0]!).catch((e: unknown) => e)) as Record<string, unknown>;
    assert.equal(sqlState(dup), '23505');
    assert.equal(dup.constraint, 'items_pkey');
    assert.equal(dup.detail, 'Key (id)=(1) already exists.');
  });

  it('gives an error inside a transaction to fn with its SQLSTATE; fn may catch it and roll back', async () => {
    await thread.exec(`DELETE FROM items`);
    const seen: unknown[] = [];
    const outcome = await thread
      .transaction(async (tx) => {
        await tx.query(`INSERT INTO items (id, name) VALUES (10, 'x')`);
        await tx
          .query(`INSERT INTO items (id, name) VALUES (10, 'y')`)
          .catch((e: unknown) => seen.push(sqlState(e)));
        // The transaction is aborted now (in_failed_sql_transaction, as on any PostgreSQL).
        await tx.query('SELECT 1').catch((e: unknown) => seen.push(sqlState(e)));
        return 'returned';
      })
      .catch((e: unknown) => e);
    assert.deepEqual(seen, ['23505', '25P02']);
    // COMMIT of an aborted transaction rolls back; the in-process PGlite rejects the same way.
    const reference = await inProcess
      .transaction(async (tx) => {
        await tx.query(`INSERT INTO items (id, name) VALUES (10, 'x')`);
        await tx.query(`INSERT INTO items (id, name) VALUES (10, 'y')`).catch(() => {});
        return 'returned';
      })
      .catch((e: unknown) => e);
    assert.ok(outcome instanceof Error);
    assert.equal((outcome as Error).message, (reference as Error).message);
    assert.equal(sqlState(outcome), sqlState(reference));
    assert.deepEqual((await thread.query(`SELECT * FROM items WHERE id = 10`)).rows, []);
  });

  it('rolls back when fn throws, and rejects with fn’s own error', async () => {
    await thread.exec(`DELETE FROM items`);
    const thrown = new Error('fn failed');
    const caught = await thread
      .transaction(async (tx) => {
        await tx.query(`INSERT INTO items (id, name) VALUES (20, 'x')`);
        throw thrown;
      })
      .catch((e: unknown) => e);
    assert.equal(caught, thrown);
    assert.deepEqual((await thread.query(`SELECT * FROM items WHERE id = 20`)).rows, []);
    // And a statement issued on the transaction after it ended is refused, not run outside it.
    let leaked: Promise<unknown> | undefined;
    await thread.transaction(async (tx) => {
      leaked = new Promise((r) => setImmediate(r))
        .then(() => tx.query(`INSERT INTO items (id, name) VALUES (21, 'late')`))
        .then(
          () => 'ran',
          (e: unknown) => (e as Error).message,
        );
    });
    assert.equal(await leaked, 'Transaction is closed');
    assert.deepEqual((await thread.query(`SELECT * FROM items WHERE id = 21`)).rows, []);
  });

  it('holds statements from outside back while a transaction is open, then runs them after it', async () => {
    await thread.exec(`DELETE FROM items`);
    for (const commit of [false, true]) {
      const hold = gate();
      let outside: Promise<number> | undefined;
      const tx = thread
        .transaction(async (t) => {
          await t.query(`INSERT INTO items (id, name) VALUES (30, 'inside')`);
          outside = thread
            .query<{ c: number }>(`SELECT count(*)::int AS c FROM items WHERE id = 30`)
            .then((r) => r.rows[0]!.c);
          // A statement of the transaction sent after the outside one: answered first all the same.
          const probe = t.query('SELECT 1');
          assert.equal(
            await settledBy(outside, probe),
            false,
            'the outside statement ran inside the transaction',
          );
          await hold.promise;
          if (!commit) throw new Error('roll back');
        })
        .catch(() => {});
      await waitFor('the outside statement to be sent', () => outside !== undefined);
      hold.open();
      await tx;
      assert.equal(await outside, commit ? 1 : 0, commit ? 'after COMMIT' : 'after ROLLBACK');
    }
  });

  it('runs concurrent transactions one after another (no lost update)', async () => {
    await thread.exec(`UPDATE counter SET n = 0`);
    const n = 20;
    await Promise.all(
      Array.from({ length: n }, () =>
        thread.transaction(async (tx) => {
          const { rows } = await tx.query<{ n: number }>(`SELECT n FROM counter WHERE id = 1`);
          // Let every other caller send its statements while this one holds its read.
          await new Promise((r) => setImmediate(r));
          await tx.query(`UPDATE counter SET n = $1 WHERE id = 1`, [rows[0]!.n + 1]);
        }),
      ),
    );
    assert.deepEqual((await thread.query(`SELECT n FROM counter`)).rows, [{ n }]);
  });

  it('delivers NOTIFY to the handlers of its channel, at commit, until unsubscribed', async () => {
    const a: string[] = [];
    const b: string[] = [];
    const offA = await thread.listen('chan_a', (p) => a.push(p));
    await thread.listen('chan_b', (p) => b.push(p));
    await thread.notify('chan_a', 'one');
    await waitFor('the first notification', () => a.includes('one'));
    const hold = gate();
    const tx = thread.transaction(async (t) => {
      await t.query(`SELECT pg_notify('chan_a', 'at-commit')`);
      await hold.promise;
    });
    // Held back by the transaction: it runs after COMMIT.
    const later = thread.notify('chan_b', 'after-commit');
    assert.equal(await settledBy(later, Promise.resolve()), false);
    assert.deepEqual(a, ['one']);
    hold.open();
    await tx;
    await later;
    await waitFor('both notifications', () => a.includes('at-commit') && b.includes('after-commit'));
    await offA();
    await thread.notify('chan_a', 'after-unsubscribe');
    await thread.notify('chan_b', 'sentinel');
    await waitFor('the sentinel', () => b.includes('sentinel'));
    assert.deepEqual(a, ['one', 'at-commit']);
    assert.deepEqual(b, ['after-commit', 'sentinel']);
  });
});

describe('PGlite thread: close and crash', () => {
  it('close() answers the statements sent before it; later ones fail as a closed connection', async () => {
    const db = await createPgliteThreadDb(undefined);
    const sent = Array.from({ length: 50 }, (_, i) => db.query<{ v: number }>('SELECT $1::int AS v', [i]));
    const hold = gate();
    const open = db.transaction(async (tx) => {
      await hold.promise;
      return (await tx.query<{ v: number }>('SELECT 7 AS v')).rows[0]!.v;
    });
    const closing = db.close();
    const late = await db.query('SELECT 1').catch((e: unknown) => e);
    assert.equal(sqlState(late), '57P01');
    assert.match((late as Error).message, /closed/);
    assert.equal(isConnectionError(late), true);
    // The transaction that was open goes on to its end; close() waits for it.
    hold.open();
    assert.equal(await open, 7);
    await closing;
    assert.deepEqual(
      (await Promise.all(sent)).map((r) => r.rows[0]!.v),
      Array.from({ length: 50 }, (_, i) => i),
    );
    await assert.rejects(
      db.transaction(async () => {}),
      { code: '57P01' },
    );
    await assert.rejects(
      db.listen('c', () => {}),
      { code: '57P01' },
    );
    await db.close(); // twice is fine
  });

  it('a thread that dies fails its waiting statements and every later one as a lost connection', async () => {
    // A heap too small for the result: the thread runs out of memory, as a real crash would.
    const db = await createPgliteThreadDb(undefined, { resourceLimits: { maxOldGenerationSizeMb: 48 } });
    try {
      const hold = gate();
      const tx = db.transaction(async (t) => {
        await hold.promise;
        await t.query('SELECT 1');
      });
      const waiting = db.query('SELECT 1 AS held_back_by_the_transaction');
      const big = db.query(`SELECT repeat(md5(g::text), 40000) AS s FROM generate_series(1, 400) g`);
      // The transaction holds `waiting` and `big` back; let go so the big one runs.
      hold.open();
      const errors = await Promise.all(
        [tx, waiting, big].map((p) =>
          p.then(
            () => undefined,
            (e: unknown) => e,
          ),
        ),
      );
      const crashed = errors.filter((e) => e !== undefined);
      assert.ok(crashed.length > 0, 'the big result did not crash the thread');
      for (const e of crashed) {
        assert.equal(sqlState(e), '57P02', String(e));
        assert.match((e as Error).message, /PGlite thread/);
        assert.equal(isConnectionError(e), true);
      }
      const later = await db.query('SELECT 1').catch((e: unknown) => e);
      assert.equal(sqlState(later), '57P02');
    } finally {
      await db.close();
    }
  });

  it('keeps a data directory: what one thread wrote, the next one opened on it reads', async () => {
    const dir = path.join(tempDir(), 'pgdata');
    const first = await createPgliteThreadDb(dir);
    await first.exec(`CREATE TABLE kept (v text)`);
    await first.transaction(async (tx) => {
      await tx.query(`INSERT INTO kept VALUES ($1)`, ['written']);
    });
    await first.close();
    const again = await createPgliteThreadDb(dir);
    try {
      assert.deepEqual((await again.query(`SELECT v FROM kept`)).rows, [{ v: 'written' }]);
    } finally {
      await again.close();
    }
  });
});
