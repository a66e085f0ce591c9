import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { isConnectionError } from '../../src/store/db.ts';
import { createPgliteDb } from '../../src/store/pglite.ts';
import { PG_URL } from '../helpers/db.ts';
import { freePort } from '../helpers/process.ts';

/** The errors node-postgres and PGlite really throw, not ones written to match the classifier. */
describe('isConnectionError', () => {
  it('is false for a statement error on PGlite', async () => {
    const db = await createPgliteDb(undefined);
    try {
      const error = await db.query('SELECT * FROM no_such_table').catch((e: unknown) => e);
      assert.equal(isConnectionError(error), false);
    } finally {
      await db.close();
    }
  });

  it('is true for a refused connection', async () => {
    const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${await freePort()}/x` });
    const error = await client.connect().catch((e: unknown) => e);
    assert.equal(isConnectionError(error), true, String(error));
  });

  it(
    'is true for pg_terminate_backend (57P01) and the dead client after it; false for a syntax error',
    {
      skip: !PG_URL,
    },
    async () => {
      const victim = new pg.Client({ connectionString: PG_URL });
      const killer = new pg.Client({ connectionString: PG_URL });
      victim.on('error', () => {});
      await victim.connect();
      await killer.connect();
      try {
        const syntax = await victim.query('SELEC 1').catch((e: unknown) => e);
        assert.equal(isConnectionError(syntax), false);
        const { rows } = await victim.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        const running = victim.query('SELECT pg_sleep(60)').catch((e: unknown) => e);
        await killer.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
        const terminated = await running;
        assert.equal(isConnectionError(terminated), true, String(terminated));
        const after = await victim.query('SELECT 1').catch((e: unknown) => e);
        assert.equal(isConnectionError(after), true, String(after));
      } finally {
        await victim.end().catch(() => {});
        await killer.end();
      }
    },
  );
});
