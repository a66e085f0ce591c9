import { activeByPlan, type ActiveByPlan } from './active-series.ts';
import type { Queryable } from './db.ts';

/**
 * Per-minute series of the last hour for the dashboard's charts: queue wait (created → started)
 * by the minute a task started, completion time (created → finished) of delivered tasks by the
 * minute they finished, and tasks (all outcomes) and images finished per minute.
 *
 * Both reads are index ranges over the hour only: tasks finished in the window through
 * `tasks_finished_at` (0005), and the tasks still running through `tasks_active` (0001). A task
 * that started within the window has either finished since (then finished_at is in the window
 * too) or is running now, so the two ranges together hold every start of the window.
 * Percentiles are PostgreSQL's `percentile_cont` (linear interpolation between the two nearest
 * ranks: https://www.postgresql.org/docs/current/functions-aggregate.html#FUNCTIONS-ORDEREDSET-TABLE).
 */

export interface PercentileBucket {
  /** Start of the minute. */
  at: Date;
  n: number;
  p50: number;
  p95: number;
}

export interface FinishedBucket {
  at: Date;
  tasks: number;
  images: number;
}

export interface MinuteSeries {
  /** The window: [from, to), `from` a whole minute, 60 buckets with the current one. */
  from: Date;
  to: Date;
  queueWait: PercentileBucket[];
  completion: PercentileBucket[];
  finished: FinishedBucket[];
  /** Queued and running tasks by plan at the start of every minute (store/active-series.ts). */
  active: ActiveByPlan[];
}

const MINUTES = 60;

/** Seconds between two timestamps, as float8. */
const seconds = (a: string, b: string) => `extract(epoch FROM ${a} - ${b})::float8`;
/** The start of the minute holding `t`. */
const minute = (t: string) => `date_trunc('minute', ${t})`;

/** The last hour's series up to `at` (default: the database's now). Buckets with no task are left out. */
export async function minuteSeries(q: Queryable, at?: Date): Promise<MinuteSeries> {
  const window = await q.query<{ from: Date; to: Date }>(
    `SELECT date_trunc('minute', t) - ($2::int - 1) * interval '1 minute' AS "from", t AS "to"
       FROM (SELECT COALESCE($1::timestamptz, now()) AS t) c`,
    [at ?? null, MINUTES],
  );
  const { from, to } = window.rows[0]!;
  const wait = await q.query<PercentileBucket>(
    `SELECT ${minute('started_at')} AS at, count(*)::int AS n,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY s) AS p95
       FROM (SELECT started_at, ${seconds('started_at', 'created_at')} AS s FROM tasks
              WHERE finished_at >= $1 AND started_at >= $1 AND started_at < $2
             UNION ALL
             SELECT started_at, ${seconds('started_at', 'created_at')} FROM tasks
              WHERE state = 'running' AND started_at >= $1 AND started_at < $2) w
      GROUP BY 1 ORDER BY 1`,
    [from, to],
  );
  const done = await q.query<PercentileBucket & { tasks: number; images: number }>(
    `SELECT ${minute('finished_at')} AS at, count(*)::int AS tasks, COALESCE(sum(images_done), 0)::int AS images,
            count(*) FILTER (WHERE state IN ('succeeded', 'partial'))::int AS n,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY ${seconds('finished_at', 'created_at')})
              FILTER (WHERE state IN ('succeeded', 'partial')) AS p50,
            percentile_cont(0.95) WITHIN GROUP (ORDER BY ${seconds('finished_at', 'created_at')})
              FILTER (WHERE state IN ('succeeded', 'partial')) AS p95
       FROM tasks WHERE finished_at >= $1 AND finished_at < $2
      GROUP BY 1 ORDER BY 1`,
    [from, to],
  );
  const pct = (r: PercentileBucket): PercentileBucket => ({
    at: r.at,
    n: r.n,
    p50: Number(r.p50),
    p95: Number(r.p95),
  });
  return {
    from,
    to,
    queueWait: wait.rows.map(pct),
    completion: done.rows.filter((r) => r.n > 0).map(pct),
    finished: done.rows.map((r) => ({ at: r.at, tasks: r.tasks, images: r.images })),
    active: await activeByPlan(q, from, MINUTES),
  };
}
