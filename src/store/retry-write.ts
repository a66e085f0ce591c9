import type { Queryable } from './db.ts';

/**
 * The writes of an admin retry (src/pipeline/retry.ts) that a submit does its own way
 * (src/store/submit-write.ts): a charge with its attempt, the fresh estimate of a task that may
 * still have one of an earlier attempt, and the queue bound without the submit's rate windows.
 */

/** Charges one attempt of a task (balance and ledger row, one statement); false, nothing written, when short. */
export async function chargeAttempt(
  tx: Queryable,
  userId: string,
  taskId: string,
  amount: number,
  attempt: number,
): Promise<boolean> {
  const { rows } = await tx.query<{ charged: boolean }>(
    `WITH c AS (UPDATE users SET balance = balance - $2 WHERE id = $1 AND balance >= $2 RETURNING id),
     l AS (INSERT INTO credit_ledger (user_id, task_id, delta, reason, attempt)
           SELECT c.id, $3, -$2::int, 'charge', $4 FROM c)
     SELECT EXISTS (SELECT 1 FROM c) AS charged`,
    [userId, amount, taskId, attempt],
  );
  return rows[0]!.charged;
}

/** The task's estimate as a submit makes it, replacing any forecast row left from an earlier attempt. */
export async function replaceForecast(
  tx: Queryable,
  taskId: string,
  estimate: { position: number; startAtMs: number; finishAtMs: number },
): Promise<void> {
  await tx.query(
    `INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
     VALUES ($1, $2, to_timestamp($3::float8 / 1000), to_timestamp($4::float8 / 1000), 'submit', now())
     ON CONFLICT (task_id) DO UPDATE SET position = EXCLUDED.position, start_at = EXCLUDED.start_at,
       finish_at = EXCLUDED.finish_at, basis = EXCLUDED.basis, forecast_at = EXCLUDED.forecast_at`,
    [taskId, estimate.position, estimate.startAtMs, estimate.finishAtMs],
  );
}

/**
 * Counts a task entering the queue against the bound (the transaction's last statement, so the
 * counter row stays locked only through the commit). Undefined, nothing counted, when full.
 */
export async function enterQueue(tx: Queryable, maxQueued: number): Promise<number | undefined> {
  const { rows } = await tx.query<{ ahead: number }>(
    'UPDATE queue_depth SET queued = queued + 1 WHERE id = 1 AND queued < $1 RETURNING queued - 1 AS ahead',
    [maxQueued],
  );
  return rows[0]?.ahead;
}
