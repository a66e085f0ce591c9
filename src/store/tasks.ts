import type { Queryable } from './db.ts';
import type { ForecastBasis } from './forecasts.ts';

export type TaskState = 'queued' | 'running' | 'succeeded' | 'partial' | 'failed' | 'canceled';
export const ACTIVE_TASK_STATES: readonly TaskState[] = ['queued', 'running'];

export interface TaskInputRef {
  role: string;
  upload_id: string;
  storage_key: string;
  mime: string;
  sha256: string;
}

export interface TaskRow {
  id: string;
  user_id: string;
  order_id: string | null;
  type: string;
  plan: string;
  prompt: string;
  inputs: TaskInputRef[];
  params: Record<string, unknown>;
  seed: number;
  weight: number;
  state: TaskState;
  stage: string | null;
  images_total: number;
  images_done: number;
  images_failed: number;
  credits_charged: number;
  credits_refunded: number;
  cancel_requested: boolean;
  error: string | null;
  deadline_at: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  /** 1, then 2, 3, … after each admin retry (POST /v1/admin/tasks/:id/retry). */
  attempt: number;
  /** What the current attempt runs and was charged; null on attempt 1 (every image, credits_charged). */
  attempt_images: number | null;
  attempt_credits: number | null;
}

export interface NewTask {
  id: string;
  userId: string;
  orderId: string | null;
  type: string;
  plan: string;
  prompt: string;
  inputs: TaskInputRef[];
  params: Record<string, unknown>;
  seed: number;
  weight: number;
  imagesTotal: number;
  creditsCharged: number;
  stage: string;
  deadlineSeconds: number | null;
}

export async function findActiveTaskForOrder(
  q: Queryable,
  userId: string,
  orderId: string,
): Promise<TaskRow | undefined> {
  const { rows } = await q.query<TaskRow>(
    `SELECT * FROM tasks WHERE user_id = $1 AND order_id = $2 AND state IN ('queued', 'running')`,
    [userId, orderId],
  );
  return rows[0];
}

export async function getTask(q: Queryable, id: string): Promise<TaskRow | undefined> {
  const { rows } = await q.query<TaskRow>('SELECT * FROM tasks WHERE id = $1', [id]);
  return rows[0];
}

export async function lockTask(tx: Queryable, id: string): Promise<TaskRow | undefined> {
  const { rows } = await tx.query<TaskRow>('SELECT * FROM tasks WHERE id = $1 FOR UPDATE', [id]);
  return rows[0];
}

export interface ListTasksFilter {
  userId?: string | undefined;
  state?: TaskState | undefined;
  limit: number;
  /** Task id to continue after (ids are time-ordered UUIDv7). */
  cursor?: string | undefined;
  /** Admin filters. */
  plan?: string | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
}

/** A task as its view shows it: the row without its request payload, plus its forecast. */
export type TaskViewRow = Omit<
  TaskRow,
  'prompt' | 'inputs' | 'params' | 'seed' | 'attempt_images' | 'attempt_credits'
> & {
  fc_position: number | null;
  fc_start_at: Date | null;
  fc_finish_at: Date | null;
  fc_basis: ForecastBasis | null;
  fc_forecast_at: Date | null;
  /** When the leader last confirmed its forecast current (null: no forecast yet). */
  fc_checked_at: Date | null;
  /** The database clock when read (epoch ms). */
  now_ms: number;
};

const TASK_VIEW_COLUMNS = /* sql */ `t.id, t.user_id, t.order_id, t.type, t.plan, t.weight, t.state,
         t.stage, t.images_total, t.images_done, t.images_failed, t.credits_charged, t.credits_refunded,
         t.cancel_requested, t.error, t.deadline_at, t.created_at, t.started_at, t.finished_at, t.attempt`;
const FORECAST_COLUMNS = /* sql */ `f.position AS fc_position, f.start_at AS fc_start_at,
         f.finish_at AS fc_finish_at, f.basis AS fc_basis, f.forecast_at AS fc_forecast_at,
         s.checked_at AS fc_checked_at, (extract(epoch FROM now()) * 1000)::float8 AS now_ms`;

// One row per task and the one summary row, through primary keys: O(1) in the queue.
const TASK_VIEW_SELECT = /* sql */ `
  SELECT ${TASK_VIEW_COLUMNS}, ${FORECAST_COLUMNS}
    FROM tasks t
    LEFT JOIN task_forecasts f ON f.task_id = t.id AND t.state IN ('queued', 'running')
    LEFT JOIN forecast_state s ON s.id = 1`;

export async function getTaskView(q: Queryable, id: string): Promise<TaskViewRow | undefined> {
  const { rows } = await q.query<TaskViewRow>(`${TASK_VIEW_SELECT} WHERE t.id = $1`, [id]);
  return rows[0];
}

/**
 * Newest first. Only the filters given become conditions (not "$n IS NULL OR …"), so each shape
 * is planned on its index: tasks_user_recent, tasks_state_recent, or the primary key.
 *
 * The page is walked one row at a time down that index (each step `id < the last id … LIMIT 1`)
 * and each row's forecast looked up by its key, so a page costs its rows whatever the planner
 * believes: with statistics from when the table was small (a queue filled in a burst, before
 * autoanalyze), the plain `ORDER BY id DESC LIMIT n` was planned as every queued task joined to
 * its forecast, then sorted (63 ms at 9,500 queued; 130 ms a list in the 500/s load bench).
 */
export async function listTasks(q: Queryable, f: ListTasksFilter): Promise<TaskViewRow[]> {
  const params: unknown[] = [];
  const where: string[] = [];
  const condition = (sql: string, value: unknown) => {
    params.push(value);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (f.userId !== undefined) condition('t.user_id = ?', f.userId);
  if (f.state !== undefined) condition('t.state = ?', f.state);
  if (f.cursor !== undefined) condition('t.id < ?', f.cursor);
  if (f.plan !== undefined) condition('t.plan = ?', f.plan);
  if (f.createdAfter !== undefined) condition('t.created_at >= ?', f.createdAfter);
  if (f.createdBefore !== undefined) condition('t.created_at < ?', f.createdBefore);
  params.push(f.limit);
  const filter = where.length ? `AND ${where.join(' AND ')}` : '';
  const { rows } = await q.query<TaskViewRow>(
    `WITH RECURSIVE page AS (
       (SELECT ${TASK_VIEW_COLUMNS} FROM tasks t WHERE true ${filter} ORDER BY t.id DESC LIMIT 1)
       UNION ALL
       SELECT n.* FROM page p CROSS JOIN LATERAL (
         SELECT ${TASK_VIEW_COLUMNS} FROM tasks t WHERE t.id < p.id ${filter} ORDER BY t.id DESC LIMIT 1) n)
     SELECT t.*, ${FORECAST_COLUMNS}
       FROM (SELECT * FROM page LIMIT $${params.length}) t
       LEFT JOIN LATERAL (
         SELECT * FROM task_forecasts f WHERE f.task_id = t.id AND t.state IN ('queued', 'running') LIMIT 1) f ON true
       LEFT JOIN forecast_state s ON s.id = 1
      ORDER BY t.id DESC`,
    params,
  );
  return rows;
}

export async function addUnits(
  tx: Queryable,
  taskId: string,
  done: number,
  failed: number,
): Promise<TaskRow> {
  const { rows } = await tx.query<TaskRow>(
    `UPDATE tasks SET images_done = images_done + $2, images_failed = LEAST(images_total - images_done - $2, images_failed + $3),
                      updated_at = now()
      WHERE id = $1 RETURNING *`,
    [taskId, done, failed],
  );
  return rows[0]!;
}

export async function markTasksRunning(tx: Queryable, taskIds: string[]): Promise<TaskRow[]> {
  if (taskIds.length === 0) return [];
  const { rows } = await tx.query<TaskRow>(
    `UPDATE tasks SET state = 'running', started_at = now(), updated_at = now()
      WHERE id = ANY($1::text[]) AND state = 'queued' RETURNING *`,
    [taskIds],
  );
  return rows;
}

/**
 * Ends a task: its final state and counters, its `finished` event (with the SSE wake-up), and
 * the scheduler's wake-up (its running-task slot is free), in one statement.
 */
export async function finishTask(
  tx: Queryable,
  taskId: string,
  state: TaskState,
  imagesFailed: number,
  refunded: number,
  error: string | null,
): Promise<TaskRow> {
  const { rows } = await tx.query<TaskRow & { finished_events: number }>(
    `WITH f AS (
       UPDATE tasks SET state = $2, images_failed = $3, credits_refunded = $4, error = COALESCE($5, error),
                        finished_at = now(), updated_at = now()
        WHERE id = $1 RETURNING *),
     ev AS (
       INSERT INTO events (task_id, user_id, type, data)
       SELECT id, user_id, 'finished',
              jsonb_build_object('state', state, 'done', images_done, 'failed', images_failed, 'total', images_total,
                                 'credits_refunded', credits_refunded, 'attempt', attempt)
         FROM f
       RETURNING pg_notify('darkroom_task', task_id), pg_notify('darkroom_schedule', ''))
     SELECT f.*, (SELECT count(*)::int FROM ev) AS finished_events FROM f`,
    [taskId, state, imagesFailed, refunded, error],
  );
  const { finished_events: _events, ...task } = rows[0]!;
  return task;
}

export interface Reopening {
  /** The step the new attempt resumes at. */
  stage: string;
  /** Images it runs (those not delivered) and what it was charged for them. */
  images: number;
  credits: number;
}

/**
 * Puts a failed or partial task back in the queue as its next attempt: the images it delivered
 * stay done, the others are owed again; the charge adds up over attempts. A deadline runs again
 * for as long as the first one did, from now. Undefined when the task is not failed or partial.
 */
export async function reopenTask(tx: Queryable, taskId: string, r: Reopening): Promise<TaskRow | undefined> {
  const { rows } = await tx.query<TaskRow>(
    `UPDATE tasks SET state = 'queued', attempt = attempt + 1, stage = $2, images_failed = 0,
                      attempt_images = $3, attempt_credits = $4, credits_charged = credits_charged + $4,
                      error = NULL, started_at = NULL, finished_at = NULL, details_pruned = false,
                      deadline_at = CASE WHEN deadline_at IS NULL THEN NULL ELSE now() + (deadline_at - created_at) END,
                      updated_at = now()
      WHERE id = $1 AND state IN ('failed', 'partial') RETURNING *`,
    [taskId, r.stage, r.images, r.credits],
  );
  return rows[0];
}

/** Marks a task canceled; an error it already has is kept. */
export async function requestCancel(tx: Queryable, taskId: string, reason: string): Promise<void> {
  await tx.query(
    'UPDATE tasks SET cancel_requested = true, error = COALESCE(error, $2), updated_at = now() WHERE id = $1',
    [taskId, reason],
  );
}

/** Sets a task's error unless it already has one (the first failure explains the task). */
export async function setTaskErrorOnce(tx: Queryable, taskId: string, error: string): Promise<void> {
  await tx.query('UPDATE tasks SET error = COALESCE(error, $2) WHERE id = $1', [taskId, error]);
}

/** Mean seconds from start to finish of recent successful tasks, per plan. */
export async function recentServiceSeconds(q: Queryable): Promise<Record<string, number>> {
  const { rows } = await q.query<{ plan: string; s: number }>(
    `SELECT plan, avg(extract(epoch FROM finished_at - started_at))::float8 AS s
       FROM (SELECT plan, started_at, finished_at,
                    row_number() OVER (PARTITION BY plan ORDER BY finished_at DESC) AS rn
               FROM tasks WHERE state = 'succeeded' AND finished_at > now() - interval '1 hour') t
      WHERE rn <= 50 GROUP BY plan`,
  );
  return Object.fromEntries(rows.map((r) => [r.plan, Number(r.s)]));
}
