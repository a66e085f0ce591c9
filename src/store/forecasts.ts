import type { Queryable } from './db.ts';

/**
 * The queue forecast's storage (migration 0007): one row per forecast task, one row for the
 * forecast as a whole, and the queued-task counter behind the queue bound. The scheduler leader
 * writes the forecast set-based after its passes (src/scheduler/forecaster.ts); the API reads
 * one row per task.
 */

export type ForecastBasis = 'simulated' | 'extrapolated' | 'submit';

export interface TaskForecastRow {
  position: number;
  start_at: Date | null;
  finish_at: Date;
  basis: ForecastBasis;
  forecast_at: Date;
}

/** A forecast task as written by the leader (times in epoch ms). */
export interface TaskForecastWrite {
  ids: string[];
  positions: number[];
  /** NaN: the task had started before the forecast. */
  startMs: number[];
  finishMs: number[];
  simulated: boolean[];
}

export interface ForecastSummary {
  forecast_at: Date;
  checked_at: Date;
  queued: number;
  tail_start_at: Date;
  complete: boolean;
  service_ms: Record<string, number>;
  per_task_ms: number;
}

export interface SummaryWrite {
  queued: number;
  tailStartMs: number;
  complete: boolean;
  serviceMs: Record<string, number>;
  perTaskMs: number;
}

const WRITE_FORECASTS = /* sql */ `
  INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
  SELECT f.id, f.position,
         CASE WHEN f.start_ms = 'NaN' THEN NULL ELSE to_timestamp(f.start_ms / 1000) END,
         to_timestamp(f.finish_ms / 1000),
         CASE WHEN f.simulated THEN 'simulated' ELSE 'extrapolated' END,
         to_timestamp($6::float8 / 1000)
    FROM unnest($1::text[], $2::int[], $3::float8[], $4::float8[], $5::bool[])
         AS f(id, position, start_ms, finish_ms, simulated)
    JOIN tasks t ON t.id = f.id AND t.state IN ('queued', 'running')
  ON CONFLICT (task_id) DO UPDATE
    SET position = EXCLUDED.position, start_at = EXCLUDED.start_at, finish_at = EXCLUDED.finish_at,
        basis = EXCLUDED.basis, forecast_at = EXCLUDED.forecast_at`;

/**
 * Writes a forecast in one statement (parallel arrays, unnest), skipping tasks that ended since
 * the state was read, and the summary row. Returns the rows written.
 */
export async function writeForecast(
  tx: Queryable,
  forecastAtMs: number,
  tasks: TaskForecastWrite,
  summary: SummaryWrite,
): Promise<number> {
  const { rowCount } = await tx.query(WRITE_FORECASTS, [
    tasks.ids,
    tasks.positions,
    tasks.startMs,
    tasks.finishMs,
    tasks.simulated,
    forecastAtMs,
  ]);
  await tx.query(
    `INSERT INTO forecast_state (id, forecast_at, checked_at, queued, tail_start_at, complete, service_ms, per_task_ms)
     VALUES (1, to_timestamp($1::float8 / 1000), now(), $2, to_timestamp($3::float8 / 1000), $4, $5::jsonb, $6)
     ON CONFLICT (id) DO UPDATE SET forecast_at = EXCLUDED.forecast_at, checked_at = EXCLUDED.checked_at,
       queued = EXCLUDED.queued, tail_start_at = EXCLUDED.tail_start_at, complete = EXCLUDED.complete,
       service_ms = EXCLUDED.service_ms, per_task_ms = EXCLUDED.per_task_ms`,
    [
      forecastAtMs,
      summary.queued,
      summary.tailStartMs,
      summary.complete,
      JSON.stringify(summary.serviceMs),
      summary.perTaskMs,
    ],
  );
  return rowCount;
}

/** Drops the forecasts of tasks that ended (the leader passes the ids it forecast before and not now). */
export async function deleteForecasts(q: Queryable, taskIds: string[]): Promise<void> {
  if (taskIds.length === 0) return;
  await q.query('DELETE FROM task_forecasts WHERE task_id = ANY($1::text[])', [taskIds]);
}

/** The leader looked and nothing changed: the last forecast still stands. */
export async function confirmForecast(q: Queryable): Promise<void> {
  await q.query('UPDATE forecast_state SET checked_at = now() WHERE id = 1');
}

/**
 * What changes whenever the queue does: the newest event (every submit, start, progress and end
 * appends one) and the queued count; and whether any job is in flight (admitted or running), the
 * only case in which time alone moves the forecast. Index-only looks, O(1).
 */
export async function queueFingerprint(q: Queryable): Promise<{ key: string; inFlight: boolean }> {
  const { rows } = await q.query<{ e: number | null; n: number | null; f: boolean }>(
    `SELECT (SELECT max(id) FROM events) AS e, (SELECT queued FROM queue_depth WHERE id = 1) AS n,
            EXISTS (SELECT 1 FROM jobs WHERE state IN ('admitted', 'running')) AS f`,
  );
  return { key: `${rows[0]?.e ?? 0}/${rows[0]?.n ?? 0}`, inFlight: rows[0]?.f ?? false };
}

export async function readForecastSummary(q: Queryable): Promise<ForecastSummary | undefined> {
  const { rows } = await q.query<ForecastSummary>(
    'SELECT forecast_at, checked_at, queued, tail_start_at, complete, service_ms, per_task_ms FROM forecast_state WHERE id = 1',
  );
  return rows[0];
}

/** Queued tasks created since the last forecast that a submit's estimate reads (newest first). */
export const SUBMIT_UNSEEN_LIMIT = 64;

/**
 * What a submit's estimate starts from, in one statement: the database clock, the queued count
 * (read without a lock: concurrent submits may not be in it yet), the last forecast, and the tasks
 * the newcomer will share the providers with: every running task (at most
 * `limits.maxRunningTasks` rows, through tasks_active) and the queued tasks created since the last
 * forecast read the queue (newest first, at most SUBMIT_UNSEEN_LIMIT, through tasks_active): the
 * rest of a burst that no forecast has seen yet. Bounded by the configuration, not by the queue.
 */
export async function readSubmitBasis(q: Queryable): Promise<SubmitBasis> {
  const { rows } = await q.query<
    ForecastSummary & { now_ms: number; has: boolean; depth: number | null; active: ActiveTask[] | null }
  >(
    `SELECT (extract(epoch FROM now()) * 1000)::float8 AS now_ms, d.queued AS depth, f.id IS NOT NULL AS has,
            f.forecast_at, f.checked_at, f.queued, f.tail_start_at, f.complete, f.service_ms, f.per_task_ms,
            (SELECT json_agg(json_build_object('id', a.id, 'user_id', a.user_id, 'type', a.type,
                    'weight', a.weight, 'state', a.state, 'remaining', a.remaining))
               FROM ((SELECT id, user_id, type, weight, state, images_total - images_done - images_failed AS remaining
                        FROM tasks WHERE state = 'running')
                     UNION ALL
                     (SELECT id, user_id, type, weight, state, images_total - images_done - images_failed
                        FROM tasks WHERE state = 'queued' AND created_at > coalesce(f.forecast_at, '-infinity')
                       ORDER BY created_at DESC LIMIT ${SUBMIT_UNSEEN_LIMIT})) a) AS active
       FROM (SELECT 1) one LEFT JOIN forecast_state f ON f.id = 1 LEFT JOIN queue_depth d ON d.id = 1`,
  );
  const r = rows[0]!;
  return {
    nowMs: r.now_ms,
    queued: r.depth ?? 0,
    active: r.active ?? [],
    summary: r.has
      ? {
          forecast_at: r.forecast_at,
          checked_at: r.checked_at,
          queued: r.queued,
          tail_start_at: r.tail_start_at,
          complete: r.complete,
          service_ms: r.service_ms,
          per_task_ms: r.per_task_ms,
        }
      : undefined,
  };
}

/** A task a newcomer shares the providers with, as the submit's estimate reads it. */
export interface ActiveTask {
  id: string;
  user_id: string;
  type: string;
  weight: number;
  state: 'queued' | 'running';
  /** Images it has left to make. */
  remaining: number;
}

export interface SubmitBasis {
  nowMs: number;
  queued: number;
  /** Running tasks, and the queued tasks created since the last forecast (at most SUBMIT_UNSEEN_LIMIT). */
  active: ActiveTask[];
  summary: ForecastSummary | undefined;
}

export async function queuedCount(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ queued: number }>('SELECT queued FROM queue_depth WHERE id = 1');
  return rows[0]?.queued ?? 0;
}
