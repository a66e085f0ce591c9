import path from 'node:path';
import type { Config } from '../config/load.ts';
import type { Db } from './db.ts';
import { createPgliteDb } from './pglite.ts';
import { createPostgresDb } from './postgres.ts';

/** Opens PostgreSQL when a URL is configured, otherwise the embedded PGlite under `<home>/pgdata`. */
export async function openDb(
  config: Pick<Config, 'database' | 'home'>,
  onError?: (error: Error) => void,
): Promise<Db> {
  if (config.database.url) {
    return createPostgresDb({
      url: config.database.url,
      poolSize: config.database.poolSize,
      ...(onError ? { onError } : {}),
    });
  }
  return createPgliteDb(path.join(config.home, 'pgdata'));
}
