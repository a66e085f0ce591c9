import type { Queryable } from './db.ts';

/**
 * Delivery states: pending ──2xx──► delivered; pending ──non-2xx / network error──► pending
 * (next_attempt_at later) ──past the retry horizon──► failed. A claim sets `locked_until` and
 * bumps `lease_token`; a deliverer that dies leaves the row to be claimed again once the lock
 * lapses, with the same id and body (at least once).
 */
export type DeliveryState = 'pending' | 'delivered' | 'failed';

export interface DeliveryRow {
  id: string;
  task_id: string;
  event_id: number;
  event_type: string;
  url: string;
  state: DeliveryState;
  attempts: number;
  lease_token: number;
  payload: string | null;
  last_status: number | null;
  last_error: string | null;
  created_at: Date;
  next_attempt_at: Date;
  delivered_at: Date | null;
}

const COLUMNS = `id, task_id, event_id::int AS event_id, event_type, url, state, attempts, lease_token, payload,
                 last_status, last_error, created_at, next_attempt_at, delivered_at`;

/**
 * Claims due deliveries, oldest event first, never one whose task has an earlier delivery
 * still pending: each task's webhooks arrive in event order.
 */
export async function claimDeliveries(q: Queryable, limit: number, lockMs: number): Promise<DeliveryRow[]> {
  const { rows } = await q.query<DeliveryRow>(
    `WITH picked AS (
       SELECT d.id FROM webhook_deliveries d
        WHERE d.state = 'pending' AND d.next_attempt_at <= now()
          AND (d.locked_until IS NULL OR d.locked_until < now())
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e
                           WHERE e.task_id = d.task_id AND e.state = 'pending' AND e.event_id < d.event_id)
        ORDER BY d.next_attempt_at, d.event_id
        LIMIT $1
        FOR UPDATE SKIP LOCKED)
     UPDATE webhook_deliveries w
        SET locked_until = now() + $2::int * interval '1 millisecond', attempts = w.attempts + 1,
            lease_token = w.lease_token + 1, updated_at = now()
       FROM picked WHERE w.id = picked.id
     RETURNING w.id, w.task_id, w.event_id::int AS event_id, w.event_type, w.url, w.state, w.attempts, w.lease_token,
               w.payload, w.last_status, w.last_error, w.created_at, w.next_attempt_at, w.delivered_at`,
    [limit, lockMs],
  );
  return rows;
}

/** Stores the body of the first attempt; returns the stored body (an earlier attempt's, if any). */
export async function fixPayload(q: Queryable, id: string, payload: string): Promise<string> {
  const { rows } = await q.query<{ payload: string }>(
    `UPDATE webhook_deliveries SET payload = COALESCE(payload, $2) WHERE id = $1 RETURNING payload`,
    [id, payload],
  );
  return rows[0]?.payload ?? payload;
}

export async function markDelivered(
  q: Queryable,
  id: string,
  token: number,
  status: number,
): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE webhook_deliveries SET state = 'delivered', delivered_at = now(), last_status = $3, last_error = NULL,
            locked_until = NULL, updated_at = now()
      WHERE id = $1 AND lease_token = $2 AND state = 'pending'`,
    [id, token, status],
  );
  return rowCount > 0;
}

/** A failed attempt: retried after `retryInMs`, or failed for good when that is undefined. */
export async function markAttemptFailed(
  q: Queryable,
  id: string,
  token: number,
  failure: { status: number | null; error: string; retryInMs: number | undefined },
): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE webhook_deliveries
        SET state = CASE WHEN $5::int IS NULL THEN 'failed' ELSE 'pending' END,
            next_attempt_at = CASE WHEN $5::int IS NULL THEN next_attempt_at
                                   ELSE now() + $5::int * interval '1 millisecond' END,
            last_status = $3, last_error = $4, locked_until = NULL, updated_at = now()
      WHERE id = $1 AND lease_token = $2 AND state = 'pending'`,
    [id, token, failure.status, failure.error.slice(0, 500), failure.retryInMs ?? null],
  );
  return rowCount > 0;
}

export interface DeliveryFilter {
  taskId?: string | undefined;
  state?: DeliveryState | undefined;
  limit: number;
}

/** Newest first, for the admin API. */
export async function listDeliveries(q: Queryable, f: DeliveryFilter): Promise<DeliveryRow[]> {
  const { rows } = await q.query<DeliveryRow>(
    `SELECT ${COLUMNS} FROM webhook_deliveries
      WHERE ($1::text IS NULL OR task_id = $1) AND ($2::text IS NULL OR state = $2)
      ORDER BY created_at DESC, event_id DESC LIMIT $3`,
    [f.taskId ?? null, f.state ?? null, f.limit],
  );
  return rows;
}

/** Deliveries waiting to be sent (for the metrics backlog gauge). */
export async function pendingDeliveries(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM webhook_deliveries WHERE state = 'pending'`,
  );
  return rows[0]?.n ?? 0;
}
