import type { Queryable } from './db.ts';

/**
 * Counts one more event in `bucket`'s fixed window starting at `windowStart` and returns the
 * count, the new one included. One row per bucket: a newer window resets it (a process whose
 * clock lags counts into the newer window, so skew cannot reopen a full one). The row lock is held
 * until the caller's transaction ends, so concurrent submits from every API process count in
 * turn, and a rolled-back submit is not counted.
 */
export async function countInWindow(tx: Queryable, bucket: string, windowStart: Date): Promise<number> {
  const { rows } = await tx.query<{ count: number }>(
    `INSERT INTO rate_limits (bucket, window_start, count) VALUES ($1, $2, 1)
     ON CONFLICT (bucket) DO UPDATE SET
       count = CASE WHEN EXCLUDED.window_start > rate_limits.window_start THEN 1 ELSE rate_limits.count + 1 END,
       window_start = GREATEST(rate_limits.window_start, EXCLUDED.window_start)
     RETURNING count`,
    [bucket, windowStart],
  );
  return rows[0]!.count;
}

/** Queued tasks of one user (partial index tasks_user_queued): bounded by the per-user cap. */
export async function countUserQueued(q: Queryable, userId: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM tasks WHERE user_id = $1 AND state = 'queued'`,
    [userId],
  );
  return rows[0]?.n ?? 0;
}
