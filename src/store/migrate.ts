import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.ts';

// The SQL files stay in src/store/migrations: the same path from this module in src/store/ and
// compiled in dist/store/ (tsc copies no SQL), so a build can never run stale migrations.
const MIGRATIONS_DIR = fileURLToPath(new URL('../../src/store/migrations/', import.meta.url));
// Serialises concurrent `migrate` runs from several processes starting at once.
const MIGRATION_LOCK = 7_413_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Forward-only migrations: `NNNN_name.sql`, applied in order, each in its own transaction. */
export function listMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({
      version: Number(f.slice(0, 4)),
      name: f.replace(/\.sql$/, ''),
      sql: readFileSync(path.join(dir, f), 'utf8'),
    }));
}

/** Applies pending migrations; returns the names applied. Safe to run from many processes at once. */
export async function migrate(db: Db): Promise<string[]> {
  const applied: string[] = [];
  for (const migration of listMigrations()) {
    const ran = await db.transaction(async (tx) => {
      // Waiting for another process's migration, or building an index on a large table, may
      // take longer than the session timeouts darkroom's queries run under.
      await tx.exec('SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0');
      await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await tx.query(
        `CREATE TABLE IF NOT EXISTS schema_migrations (
           version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const done = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [migration.version]);
      if (done.rowCount > 0) return false;
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
      await tx.exec(migration.sql);
      return true;
    });
    if (ran) applied.push(migration.name);
  }
  return applied;
}
