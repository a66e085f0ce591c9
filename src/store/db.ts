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

/** SQLSTATEs after which a whole transaction can safely run again. */
export const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
