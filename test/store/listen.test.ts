import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import type { Db } from '../../src/store/db.ts';
import { LISTEN_APPLICATION_NAME, createPostgresDb } from '../../src/store/postgres.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The LISTEN session of the node-postgres Db under reconnects: one session at a time, each
 * NOTIFY delivered once, nothing left open after close(). Sessions are counted in
 * pg_stat_activity by the listener's application_name in this test's own database.
 */
describe('LISTEN session under reconnects [postgres]', { skip: !PG_URL }, () => {
  let admin: pg.Client;
  // Each test has its own database, so a session one test leaks is not counted by the next.
  let database: { url: string; drop: () => Promise<void> };
  let dbName: string;

  before(async () => {
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
  });
  after(async () => {
    await admin.end();
  });
  beforeEach(async () => {
    database = await createPostgresDatabase();
    dbName = new URL(database.url).pathname.slice(1);
  });
  afterEach(async () => {
    await database.drop();
  });

  async function listenerPids(): Promise<number[]> {
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`,
      [dbName, LISTEN_APPLICATION_NAME],
    );
    return rows.map((r) => r.pid);
  }

  function open(): { db: Promise<Db>; errors: Error[] } {
    const errors: Error[] = [];
    return {
      db: createPostgresDb({ url: database.url, poolSize: 2, onError: (e) => errors.push(e) }),
      errors,
    };
  }

  it('reconnects into one session: listens during the reconnect do not open a second one', async () => {
    const { db: opening, errors } = open();
    const db = await opening;
    try {
      const seen: string[] = [];
      await db.listen('c_main', (p) => seen.push(p));
      const [pid] = await waitFor('the listener session', async () => {
        const pids = await listenerPids();
        return pids.length === 1 ? pids : undefined;
      });
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor('the listener to notice its session ended', () => errors.length > 0, {
        timeoutMs: 120_000,
      });
      // Two subscriptions while no session is up, concurrently, as an SSE stream and a worker would.
      await Promise.all([db.listen('c_a', () => {}), db.listen('c_b', () => {})]);
      const pids = await waitFor(
        'a listener session again',
        async () => {
          const p = await listenerPids();
          return p.length > 0 && !p.includes(pid!) ? p : undefined;
        },
        { timeoutMs: 120_000 },
      );
      assert.equal(pids.length, 1, `listener sessions: ${pids.length}`);

      await waitFor(
        'notifications on the old channel after the reconnect',
        async () => {
          await db.notify('c_main', 'probe');
          return seen.includes('probe');
        },
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      seen.length = 0;
      await db.notify('c_main', 'once');
      await db.notify('c_main', 'sentinel');
      await waitFor('the sentinel', () => seen.includes('sentinel'), { timeoutMs: 60_000 });
      await db.notify('c_main', 'sentinel2');
      await waitFor('the second sentinel', () => seen.includes('sentinel2'), { timeoutMs: 60_000 });
      assert.equal(seen.filter((p) => p === 'once').length, 1, `delivered: ${seen.join(',')}`);
      assert.equal((await listenerPids()).length, 1);
    } finally {
      await db.close();
    }
  });

  it('close() during a reconnect leaves no session behind', async () => {
    for (let round = 0; round < 3; round++) {
      const { db: opening, errors } = open();
      const db = await opening;
      await db.listen('c_main', () => {});
      const [pid] = await waitFor('the listener session', async () => {
        const pids = await listenerPids();
        return pids.length === 1 ? pids : undefined;
      });
      await admin.query('SELECT pg_terminate_backend($1)', [pid]);
      await waitFor('the listener to notice its session ended', () => errors.length > 0, {
        timeoutMs: 120_000,
      });
      // A subscription starts a connect; close() comes while it is in flight.
      const listening = db.listen('c_other', () => {}).catch(() => {});
      await db.close();
      await listening;
      await waitFor(
        'no listener session after close()',
        async () => ((await listenerPids()).length === 0 ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 200 },
      );
    }
  });
});
