import type { Queryable } from './db.ts';
import { Channels } from './db.ts';
import { jobsAsJson, type NewJob } from './jobs.ts';
import type { NewTask, TaskRow } from './tasks.ts';

/**
 * The submit's writes in three statements instead of a dozen: a submit holds a pooled
 * connection (and, on the embedded database, the only one) for as many round trips as it makes,
 * so at hundreds of submits a second the round trips are the queue. Each statement keeps the
 * order the transaction needs: the task before the charge that locks the user's row, the
 * counters (rate windows, the queue bound) last so their row locks are held only through commit.
 */

export interface SubmitWrite {
  task: NewTask;
  /** The first step's jobs. */
  jobs: NewJob[];
  webhook: { url: string; stages: boolean } | undefined;
  /** The newcomer's first estimate (the forecast pass refines it). */
  estimate: { position: number; startAtMs: number; finishAtMs: number };
}

/**
 * Inserts the queued task with its first jobs, its `queued` event, its webhook and its first
 * estimate, and notifies the scheduler and the task's streams, in one statement. Undefined (and
 * nothing written) when the order already has an active task. The jobs' foreign key is checked
 * at the end of the statement, when the task row exists.
 */
export async function insertQueuedTask(tx: Queryable, w: SubmitWrite): Promise<TaskRow | undefined> {
  const t = w.task;
  const { rows } = await tx.query<TaskRow>(
    `WITH t AS (
       INSERT INTO tasks (id, user_id, order_id, type, plan, prompt, inputs, params, seed, weight, state, stage,
                          images_total, credits_charged, deadline_at, webhook_url, webhook_stages)
       VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, 'queued', $11, $12, $13,
               CASE WHEN $14::int IS NULL THEN NULL ELSE now() + $14::int * interval '1 second' END,
               $15, $16)
       ON CONFLICT (user_id, order_id) WHERE order_id IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
       RETURNING *
     ), j AS (
       INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state,
                         max_attempts, input)
       SELECT x.id, t.id, t.user_id, x.step_index, x.step_name, x.kind, x.resource, x.first_index, x.count,
              'queued', x.max_attempts, x.input
         FROM t, jsonb_to_recordset($17::jsonb) AS x(id text, step_index int, step_name text, kind text,
              resource text, first_index int, count int, max_attempts int, input jsonb)
     ), e AS (
       INSERT INTO events (task_id, user_id, type, data)
       SELECT t.id, t.user_id, 'queued', '{"state":"queued"}'::jsonb FROM t
     ), f AS (
       INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
       SELECT t.id, $18, to_timestamp($19::float8 / 1000), to_timestamp($20::float8 / 1000), 'submit', now() FROM t
       ON CONFLICT (task_id) DO NOTHING
     )
     SELECT t.* FROM t, LATERAL (SELECT pg_notify('${Channels.task}', t.id), pg_notify('${Channels.schedule}', '')) n`,
    [
      t.id,
      t.userId,
      t.orderId,
      t.type,
      t.plan,
      t.prompt,
      JSON.stringify(t.inputs),
      JSON.stringify(t.params),
      t.seed,
      t.weight,
      t.stage,
      t.imagesTotal,
      t.creditsCharged,
      t.deadlineSeconds,
      w.webhook?.url ?? null,
      w.webhook?.stages ?? false,
      jobsAsJson(w.jobs),
      w.estimate.position,
      w.estimate.startAtMs,
      w.estimate.finishAtMs,
    ],
  );
  return rows[0];
}

/** A user darkroom has not seen, with its initial grant recorded in the ledger; one statement. */
export async function ensureUserWithGrant(
  tx: Queryable,
  userId: string,
  initialGrant: number,
): Promise<void> {
  await tx.query(
    `WITH u AS (INSERT INTO users (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id)
     INSERT INTO credit_ledger (user_id, delta, reason) SELECT u.id, $2, 'grant' FROM u WHERE $2 <> 0`,
    [userId, initialGrant],
  );
}

/** Charges a task in one statement (balance and ledger); false, nothing written, when it is short. */
export async function chargeSubmittedTask(
  tx: Queryable,
  userId: string,
  taskId: string,
  amount: number,
): Promise<boolean> {
  const { rows } = await tx.query<{ charged: boolean }>(
    `WITH c AS (UPDATE users SET balance = balance - $2 WHERE id = $1 AND balance >= $2 RETURNING id),
     l AS (INSERT INTO credit_ledger (user_id, task_id, delta, reason) SELECT c.id, $3, -$2::int, 'charge' FROM c)
     SELECT EXISTS (SELECT 1 FROM c) AS charged`,
    [userId, amount, taskId],
  );
  return rows[0]!.charged;
}

export interface SubmitCounts {
  /** The user's queued tasks, this one included. */
  userQueued: number;
  /** Submits in the current rate window, this one included. */
  userInWindow: number;
  keyInWindow: number | undefined;
  /** Tasks queued ahead of this one; undefined (not counted) when the queue is full. */
  queuedAhead: number | undefined;
}

/**
 * Counts the submit against the per-user queued cap, the user's and the key's rate windows
 * (one row per bucket: a newer window resets it) and the queue bound, in one statement, the
 * transaction's last before commit. The caller judges the counts; a refused submit rolls them back.
 */
export async function countSubmit(
  tx: Queryable,
  who: { userId: string; keyId: string | null | undefined },
  windowStart: Date,
  maxQueued: number,
): Promise<SubmitCounts> {
  const { rows } = await tx.query<{
    user_queued: number;
    user_window: number;
    key_window: number | null;
    ahead: number | null;
  }>(
    `WITH b AS (
       INSERT INTO rate_limits (bucket, window_start, count)
       SELECT x.bucket, $2, 1 FROM unnest($3::text[]) AS x(bucket)
       ON CONFLICT (bucket) DO UPDATE SET
         count = CASE WHEN EXCLUDED.window_start > rate_limits.window_start THEN 1 ELSE rate_limits.count + 1 END,
         window_start = GREATEST(rate_limits.window_start, EXCLUDED.window_start)
       RETURNING bucket, count
     ), q AS (
       UPDATE queue_depth SET queued = queued + 1 WHERE id = 1 AND queued < $4 RETURNING queued - 1 AS ahead
     )
     SELECT (SELECT count(*)::int FROM tasks WHERE user_id = $1 AND state = 'queued') AS user_queued,
            (SELECT count FROM b WHERE bucket = $3[1]) AS user_window,
            (SELECT count FROM b WHERE bucket = $3[2]) AS key_window,
            (SELECT ahead FROM q) AS ahead`,
    [
      who.userId,
      windowStart,
      who.keyId ? [`user:${who.userId}`, `key:${who.keyId}`] : [`user:${who.userId}`],
      maxQueued,
    ],
  );
  const r = rows[0]!;
  return {
    userQueued: r.user_queued,
    userInWindow: r.user_window,
    keyInWindow: r.key_window ?? undefined,
    queuedAhead: r.ahead ?? undefined,
  };
}
