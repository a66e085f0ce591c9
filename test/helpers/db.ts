import { randomBytes } from 'node:crypto';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import type { Db } from '../../src/store/db.ts';
import { createPgliteThreadDb } from '../../src/store/pglite-thread.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { migrate } from '../../src/store/migrate.ts';

export type DbKind = 'pglite' | 'postgres';

/** Set by scripts/test.mjs when a PostgreSQL answers. */
export const PG_URL = process.env.DARKROOM_TEST_PG_URL;

/** The database kinds this run can test: PGlite always, PostgreSQL when one answers. */
export const DB_KINDS: DbKind[] = PG_URL ? ['pglite', 'postgres'] : ['pglite'];

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A fresh, empty PostgreSQL database; returns its URL and a function that drops it. */
export async function createPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  if (!PG_URL) throw new Error('no PostgreSQL for this run');
  const name = `darkroom_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const drop = async () => {
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    await c.end();
  };
  return { url: withDatabase(PG_URL, name), drop };
}

export interface TestDb {
  db: Db;
  /** PostgreSQL URL of this database; undefined for PGlite. */
  url: string | undefined;
}

/**
 * Call at describe level: opens a migrated database of `kind` before the suite's tests and
 * closes (and for PostgreSQL drops) it after them. Fields are set once `before` has run.
 */
export function useTestDb(kind: DbKind): TestDb {
  const holder = {} as TestDb;
  let cleanup: (() => Promise<void>) | undefined;
  before(async () => {
    if (kind === 'pglite') {
      // The server's default (database.pgliteThread): PGlite in a worker thread.
      holder.db = await createPgliteThreadDb(undefined);
      holder.url = undefined;
      cleanup = () => holder.db.close();
    } else {
      const created = await createPostgresDatabase();
      holder.db = await createPostgresDb({ url: created.url, poolSize: 10 });
      holder.url = created.url;
      cleanup = async () => {
        await holder.db.close();
        await created.drop();
      };
    }
    await migrate(holder.db);
  });
  after(async () => {
    await cleanup?.();
  });
  return holder;
}

/** Runs the same tests once per available database kind. */
export function describeEachDb(title: string, fn: (kind: DbKind) => void): void {
  for (const kind of DB_KINDS) describe(`${title} [${kind}]`, () => fn(kind));
  if (!PG_URL)
    describe(`${title} [postgres]`, { skip: 'no PostgreSQL answers (set DATABASE_URL)' }, () => {});
}
