import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { RETRYABLE_SQLSTATES, sqlState, type Db, type Queryable, type QueryResult } from './db.ts';

/**
 * Embedded PostgreSQL (WASM, in-process). One connection: PGlite queues queries and
 * holds other queries back while a transaction runs, so transactions never interleave.
 * `dataDir` undefined keeps everything in memory (tests).
 */
export async function createPgliteDb(dataDir: string | undefined): Promise<Db> {
  if (dataDir) mkdirSync(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir);
  const run = async <R>(
    q: { query: PGlite['query'] },
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>> => {
    const result = await q.query<R>(sql, params as unknown[] | undefined);
    // PGlite reports affectedRows 0 for a SELECT; like node-postgres, count the rows it returned.
    return {
      rows: result.rows,
      rowCount: result.rows.length > 0 ? result.rows.length : (result.affectedRows ?? 0),
    };
  };
  let closed = false;
  return {
    kind: 'pglite',
    query: (sql, params) => run(pglite, sql, params),
    async exec(sql) {
      await pglite.exec(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        try {
          return await pglite.transaction(async (t) =>
            fn({
              query: (sql, params) => run(t, sql, params),
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
