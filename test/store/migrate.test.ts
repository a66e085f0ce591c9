import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createPgliteDb } from '../../src/store/pglite.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { listMigrations, migrate } from '../../src/store/migrate.ts';
import { PG_URL, createPostgresDatabase } from '../helpers/db.ts';
import { tempDir } from '../helpers/config.ts';

const ALL = listMigrations().map((m) => m.name);

describe('migrations', () => {
  it('apply once on an embedded database and are skipped when it is opened again', async () => {
    const dir = path.join(tempDir(), 'pgdata');
    const first = await createPgliteDb(dir);
    assert.deepEqual(await migrate(first), ALL);
    await first.query(`INSERT INTO users (id, balance) VALUES ('kept', 5)`);
    await first.close();
    const again = await createPgliteDb(dir);
    try {
      assert.deepEqual(await migrate(again), []);
      const { rows } = await again.query<{ balance: number }>(`SELECT balance FROM users WHERE id = 'kept'`);
      assert.equal(rows[0]?.balance, 5);
    } finally {
      await again.close();
    }
  });

  it(
    'are applied exactly once when several processes start at the same time',
    { skip: PG_URL ? false : 'needs PostgreSQL' },
    async () => {
      const { url, drop } = await createPostgresDatabase();
      const dbs = await Promise.all([1, 2, 3].map(() => createPostgresDb({ url, poolSize: 2 })));
      try {
        const applied = await Promise.all(dbs.map((db) => migrate(db)));
        assert.deepEqual(applied.flat().sort(), [...ALL].sort());
        const { rows } = await dbs[0]!.query<{ n: number }>(
          'SELECT count(*)::int AS n FROM schema_migrations',
        );
        assert.equal(rows[0]!.n, ALL.length);
      } finally {
        await Promise.all(dbs.map((db) => db.close()));
        await drop();
      }
    },
  );
});
