/**
 * The one small interface every SQL statement in darkroom runs through, with two
 * implementations: node-postgres (production, `DATABASE_URL`) and PGlite (embedded default).
 * Both speak the same SQL; tests run every query on both.
 */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export type NotificationHandler = (payload: string) => void;

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` in a transaction, retrying on serialization failures and deadlocks. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Subscribes to NOTIFY on a channel; returns an unsubscribe function. A hint only: callers also poll. */
  listen(channel: string, handler: NotificationHandler): Promise<() => Promise<void>>;
  notify(channel: string, payload?: string): Promise<void>;
  close(): Promise<void>;
}

export const Channels = {
  /** New work to admit: a task was submitted, a job returned to the queue, capacity freed. */
  schedule: 'darkroom_schedule',
  /** Jobs were admitted: workers should claim. */
  work: 'darkroom_work',
  /** A task changed: SSE streams should look. Payload: task id. */
  task: 'darkroom_task',
  /** The leader wrote a new queue forecast: SSE streams re-read position and ETA. */
  forecast: 'darkroom_forecast',
} as const;

/** A NOTIFY on `channel`, delivered when the transaction commits (identical ones fold into one). */
export async function notifyAtCommit(tx: Queryable, channel: string): Promise<void> {
  await tx.query(`SELECT pg_notify($1, '')`, [channel]);
}

/** Throws unless the database answers a trivial statement (readiness). */
export async function ping(q: Queryable): Promise<void> {
  await q.query('SELECT 1');
}

/** SQLSTATEs after which a whole transaction can safely run again. */
export const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Node socket codes and SQLSTATEs that mean the connection went away, not that the statement
 * was wrong: class 08 (connection exception), 57P01 admin_shutdown (pg_terminate_backend, a
 * fast shutdown), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or shutting down)
 * (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 */
const CONNECTION_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
]);

/**
 * node-postgres reports a connection that ended under it by message only ("Connection terminated
 * unexpectedly", "… due to connection timeout", "Client has encountered a connection error and is
 * not queryable", the pool's "timeout exceeded when trying to connect"). PGlite runs in-process
 * and has no connection to lose: none of its errors is one of these.
 */
const CONNECTION_MESSAGES =
  /Connection terminated|connection error and is not queryable|timeout exceeded when trying to connect|Connection ended unexpectedly/i;

/**
 * True when `error` says the connection to the database was lost (or could not be made): the
 * statement may not have run, or (a lost COMMIT) may have. Only a write fenced so that running it
 * twice changes nothing (an attempt's outcome, fenced by its lease token) may be retried on it.
 */
export function isConnectionError(error: unknown): boolean {
  const code = sqlState(error);
  if (code && (code.startsWith('08') || CONNECTION_CODES.has(code))) return true;
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' && CONNECTION_MESSAGES.test(message);
}
