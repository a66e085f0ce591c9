import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import type { PGlite as PGliteClass } from '@electric-sql/pglite';
import { RETRYABLE_SQLSTATES, sqlState, type Db, type Queryable, type QueryResult } from './db.ts';

const require = createRequire(import.meta.url);
/**
 * PGlite's CommonJS build, loaded with require(): through darkroom's ESM loader (tsx) its
 * 424 KB Emscripten module is rewritten for its one dynamic import and given an inline source
 * map, which costs about 37 MB of memory (measured: 41.5 MB as ESM, 4.7 MB as CommonJS).
 */
const pgliteEntry = require.resolve('@electric-sql/pglite');

export type PGlite = PGliteClass;

/**
 * Creates a new data directory in a child process. initdb runs in the WASM memory that the
 * database then keeps, and WASM memory never shrinks: created in-process, a new directory
 * leaves the server about 300 MB larger than the same directory opened later (measured: 618
 * against 279 MB RSS for PGlite alone).
 */
async function initDataDir(dataDir: string): Promise<void> {
  const script = 'require(process.argv[1]).PGlite.create(process.argv[2]).then((db) => db.close())';
  await promisify(execFile)(process.execPath, ['-e', script, pgliteEntry, dataDir]);
}

/**
 * Opens PGlite on `dataDir` (created first when new), or in memory when `dataDir` is undefined
 * (tests). Used in this thread by createPgliteDb and in a worker thread by pglite-worker.ts.
 */
export async function openPglite(dataDir: string | undefined): Promise<PGlite> {
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await initDataDir(dataDir);
  }
  const { PGlite } = require(pgliteEntry) as { PGlite: typeof PGliteClass };
  return PGlite.create(dataDir);
}

/** One statement on PGlite (or one of its transactions), its result shaped as node-postgres's. */
export async function runPglite<R>(
  q: { query: PGliteClass['query'] },
  sql: string,
  params?: readonly unknown[],
): Promise<QueryResult<R>> {
  const result = await q.query<R>(sql, params as unknown[] | undefined);
  // PGlite reports affectedRows 0 for a SELECT; like node-postgres, count the rows it returned.
  return {
    rows: result.rows,
    rowCount: result.rows.length > 0 ? result.rows.length : (result.affectedRows ?? 0),
  };
}

/**
 * Embedded PostgreSQL (WASM) in this thread (`database.pgliteThread: false`; the default runs
 * it in a worker thread, pglite-thread.ts). One connection: PGlite queues queries and holds
 * other queries back while a transaction runs, so transactions never interleave.
 * `dataDir` undefined keeps everything in memory (tests).
 */
export async function createPgliteDb(dataDir: string | undefined): Promise<Db> {
  const pglite = await openPglite(dataDir);
  let closed = false;
  return {
    kind: 'pglite',
    query: (sql, params) => runPglite(pglite, sql, params),
    async exec(sql) {
      await pglite.exec(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        try {
          return await pglite.transaction(async (t) =>
            fn({
              query: (sql, params) => runPglite(t, sql, params),
              exec: async (sql) => {
                await t.exec(sql);
              },
            }),
          );
        } catch (error) {
          if (attempt < 5 && RETRYABLE_SQLSTATES.has(sqlState(error) ?? '')) continue;
          throw error;
        }
      }
    },
    async listen(channel, handler) {
      const unsubscribe = await pglite.listen(channel, handler);
      return async () => {
        if (!closed) await unsubscribe();
      };
    },
    async notify(channel, payload = '') {
      await pglite.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async close() {
      closed = true;
      await pglite.close();
    },
  };
}
