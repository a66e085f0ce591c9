import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { Db } from './db.ts';

/**
 * Opens PostgreSQL when a URL is configured, otherwise the embedded PGlite under `<home>/pgdata`,
 * in a worker thread unless `database.pgliteThread` is false. Each driver is imported only when it
 * is the one configured (PGlite's module alone costs a process about 5 MB, pg's about 10 MB).
 */
export async function openDb(
  config: Pick<Config, 'database' | 'home'>,
  onError?: (error: Error) => void,
): Promise<Db> {
  if (config.database.url) {
    const { createPostgresDb } = await import('./postgres.ts');
    return createPostgresDb({
      url: config.database.url,
      poolSize: config.database.poolSize,
      ...(onError ? { onError } : {}),
    });
  }
  const dataDir = path.join(config.home, 'pgdata');
  if (config.database.pgliteThread) {
    const { createPgliteThreadDb } = await import('./pglite-thread.ts');
    return createPgliteThreadDb(dataDir);
  }
  const { createPgliteDb } = await import('./pglite.ts');
  return createPgliteDb(dataDir);
}
