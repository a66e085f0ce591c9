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
/** application_name of the LISTEN session, so it can be told apart in pg_stat_activity. */
export const LISTEN_APPLICATION_NAME = 'darkroom-listen';

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
  const listener = createListenSession(options.url, listeners, onError);
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
      if (!set) {
        set = new Set();
        listeners.set(channel, set);
      }
      set.add(handler);
      await listener.ensure();
      return async () => {
        set.delete(handler);
      };
    },
    async notify(channel, payload = '') {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async close() {
      await listener.close();
      await pool.end();
    },
  };
  return db;
}

/**
 * The one LISTEN session of a Db. At most one session exists at a time: connects are single-flight
 * (a subscription during a reconnect joins the connect in flight instead of opening a second
 * session, which would deliver every NOTIFY twice), a lost session is replaced after a backoff,
 * notifications from any session but the current one are dropped, and close() waits for a connect
 * in flight so its session is ended rather than leaked.
 */
function createListenSession(
  url: string,
  listeners: Map<string, Set<NotificationHandler>>,
  onError: (error: Error) => void,
): { ensure(): Promise<void>; close(): Promise<void> } {
  let active: { client: pg.Client; listening: Set<string> } | undefined;
  let connecting: Promise<void> | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let backoffMs = 0;
  let closed = false;

  function scheduleRetry(): void {
    if (closed || retryTimer || listeners.size === 0) return;
    backoffMs = Math.min(5_000, Math.max(500, backoffMs * 2));
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void ensure();
    }, backoffMs);
  }

  function lost(client: pg.Client): void {
    if (active?.client !== client) return;
    active = undefined;
    client.end().catch(() => {});
    scheduleRetry();
  }

  /** LISTENs on every subscribed channel this session does not listen on yet. */
  async function sync(session: { client: pg.Client; listening: Set<string> }): Promise<void> {
    for (const channel of listeners.keys()) {
      if (session.listening.has(channel)) continue;
      await session.client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      session.listening.add(channel);
    }
  }

  async function connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: url,
      application_name: LISTEN_APPLICATION_NAME,
      connectionTimeoutMillis: 10_000,
    });
    client.on('error', (error) => {
      onError(error);
      lost(client);
    });
    client.on('end', () => lost(client));
    client.on('notification', (msg) => {
      if (active?.client !== client) return;
      for (const handler of listeners.get(msg.channel) ?? []) handler(msg.payload ?? '');
    });
    try {
      await client.connect();
      if (closed) {
        await client.end().catch(() => {});
        return;
      }
      const session = { client, listening: new Set<string>() };
      active = session;
      await sync(session);
      backoffMs = 0;
    } catch (error) {
      onError(coerceError(error));
      if (active?.client === client) active = undefined;
      client.end().catch(() => {});
      scheduleRetry();
    }
  }

  /** Connects (or joins the connect in flight) and listens on every subscribed channel. */
  async function ensure(): Promise<void> {
    if (closed) return;
    if (connecting) await connecting;
    else if (!active) {
      connecting = connect().finally(() => (connecting = undefined));
      await connecting;
    }
    if (active) await sync(active).catch((error: unknown) => onError(coerceError(error)));
  }

  return {
    ensure,
    async close() {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      await connecting;
      const session = active;
      active = undefined;
      await session?.client.end().catch(() => {});
    },
  };
}
