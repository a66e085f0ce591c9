import pg from 'pg';
import { coerceError } from '../errors.ts';
import {
  RETRYABLE_SQLSTATES,
  sqlState,
  type Db,
  type NotificationHandler,
  type Queryable,
  type QueryResult,
} from './db.ts';

export interface PostgresOptions {
  url: string;
  poolSize: number;
  onError?: (error: Error) => void;
}

// int8 counts and sums come back as strings by default; darkroom's values fit in a double.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

/**
 * Server-side limits on every pooled session, so a stuck peer cannot hold darkroom's rows
 * for long (https://www.postgresql.org/docs/current/runtime-config-client.html):
 * - lock_timeout: no statement waits more than 5 s for a row lock (the caller retries later);
 * - statement_timeout: darkroom's statements are small; 30 s means something is wrong;
 * - idle_in_transaction_session_timeout: a process paused or partitioned inside a transaction
 *   (GC pause, SIGSTOP, half-open TCP) loses its session, and its locks, after 10 s.
 * node-postgres sends them as startup parameters (pg ConnectionParameters).
 * JIT is off: darkroom's statements are short index walks whose LIMIT the planner's cost
 * estimate ignores, so JIT compiled them for 2+ s a pass (measured: the scheduler's head read
 * at 100k queued, 2.3 s of JIT for 15 ms of work).
 */
const SESSION_TIMEOUTS = {
  lock_timeout: 5_000,
  statement_timeout: 30_000,
  idle_in_transaction_session_timeout: 10_000,
  options: '-c jit=off',
} as const;

/**
 * node-postgres pool. A lost connection only fails the queries that were on it: the pool
 * opens new ones, and the LISTEN session reconnects with backoff, so a database restart
 * is survived without exiting.
 */
export async function createPostgresDb(options: PostgresOptions): Promise<Db> {
  const onError = options.onError ?? (() => {});
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize,
    connectionTimeoutMillis: 10_000,
    ...SESSION_TIMEOUTS,
  });
  pool.on('error', (error) => onError(error));
  const listeners = new Map<string, Set<NotificationHandler>>();
  let listenClient: pg.Client | undefined;
  let closed = false;
  let reconnectTimer: NodeJS.Timeout | undefined;

  async function connectListener(delayMs = 0): Promise<void> {
    if (closed || listeners.size === 0) return;
    if (delayMs) {
      await new Promise<void>((resolve) => {
        reconnectTimer = setTimeout(resolve, delayMs);
      });
      if (closed) return;
    }
    const client = new pg.Client({ connectionString: options.url });
    client.on('error', (error) => {
      onError(error);
      if (listenClient === client) {
        listenClient = undefined;
        client.end().catch(() => {});
        void connectListener(1000);
      }
    });
    client.on('notification', (msg) => {
      for (const handler of listeners.get(msg.channel) ?? []) handler(msg.payload ?? '');
    });
    try {
      await client.connect();
      for (const channel of listeners.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      listenClient = client;
    } catch (error) {
      onError(coerceError(error));
      client.end().catch(() => {});
      void connectListener(Math.min(5000, Math.max(500, delayMs * 2)));
    }
  }

  const db: Db = {
    kind: 'postgres',
    async query<R>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      const result = await pool.query(sql, params as unknown[] | undefined);
      return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
    },
    async exec(sql: string) {
      await pool.query(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      for (let attempt = 1; ; attempt++) {
        const client = await pool.connect();
        let broken = false;
        // A connection that dies while checked out (database restart, pg_terminate_backend)
        // emits 'error' on the client; unheard, that event would crash the process.
        const onClientError = (error: Error) => {
          broken = true;
          onError(error);
        };
        client.on('error', onClientError);
        try {
          await client.query('BEGIN');
          const tx: Queryable = {
            async query<R>(sql: string, params?: readonly unknown[]) {
              const result = await client.query(sql, params as unknown[] | undefined);
              return { rows: result.rows as R[], rowCount: result.rowCount ?? 0 };
            },
            async exec(sql: string) {
              await client.query(sql);
            },
          };
          const value = await fn(tx);
          await client.query('COMMIT');
          return value;
        } catch (error) {
          try {
            await client.query('ROLLBACK');
          } catch {
            broken = true; // the connection itself is gone; do not return it to the pool
          }
          if (attempt < 5 && RETRYABLE_SQLSTATES.has(sqlState(error) ?? '')) continue;
          throw error;
        } finally {
          client.off('error', onClientError);
          client.release(broken);
        }
      }
    },
    async listen(channel, handler) {
      let set = listeners.get(channel);
      const isNew = !set;
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
      }
      set.add(handler);
      if (!listenClient) await connectListener();
      else if (isNew)
        await listenClient
          .query(`LISTEN ${pg.escapeIdentifier(channel)}`)
          .catch((e: unknown) => onError(coerceError(e)));
      return async () => {
        set.delete(handler);
      };
    },
    async notify(channel, payload = '') {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async close() {
      closed = true;
      if (reconnectTimer) clearTimeout(reconnectTimer);
      await listenClient?.end().catch(() => {});
      await pool.end();
    },
  };
  return db;
}
