import type { Queryable } from './db.ts';

/**
 * Queued and running tasks by plan at the start of each minute of the window, for the
 * dashboard's "queued and running by plan" chart. Counting the tasks whose interval holds each
 * minute would read the whole backlog (a queue may hold 100,000 tasks), so this walks back from
 * the current counts (the trigger-kept `tasks_active` counters, migration 0005) instead:
 *
 *   queued(t)  = queued(now)  − created after t + left the queue after t
 *   running(t) = running(now) − started after t + started and finished after t
 *
 * where a task leaves the queue when it starts, or when it ends without starting (canceled).
 * Every such change after `from` belongs to a task that finished since `from` (the
 * `tasks_finished_at` index, 0005), is queued and was created since `from`, or is running (both
 * through `tasks_active`, 0001; running tasks are bounded by capacity, not by the backlog).
 * Changes after the window's end count too: the counters are the present's, whatever `to` is.
 * One statement, so the counters and the tasks are read from the same snapshot.
 *
 * Limit: an admin retry (store/tasks.ts) clears started_at/finished_at, so a retried task
 * counts as queued since it was first created.
 */

export interface ActiveByPlan {
  /** Start of the minute: the instant counted. */
  at: Date;
  /** Plan → tasks; every plan with a task queued or running at some point of the window. */
  queued: Record<string, number>;
  running: Record<string, number>;
}

export async function activeByPlan(q: Queryable, from: Date, minutes: number): Promise<ActiveByPlan[]> {
  const { rows } = await q.query<{ i: number; plan: string; queued: number; running: number }>(
    `WITH cur AS (
       SELECT l->>'plan' AS plan, COALESCE(sum(n) FILTER (WHERE l->>'state' = 'queued'), 0) AS queued,
              COALESCE(sum(n) FILTER (WHERE l->>'state' = 'running'), 0) AS running
         FROM (SELECT labels::jsonb AS l, n FROM stat_totals WHERE name = 'tasks_active'
               UNION ALL
               SELECT labels::jsonb, n FROM stat_deltas WHERE name = 'tasks_active') c
        WHERE l->>'state' IN ('queued', 'running')
        GROUP BY 1),
     ev AS (
       SELECT plan, created_at, started_at, finished_at FROM tasks WHERE finished_at >= $1
       UNION ALL
       SELECT plan, created_at, started_at, finished_at FROM tasks
        WHERE state = 'queued' AND created_at >= $1 AND finished_at IS NULL
       UNION ALL
       SELECT plan, created_at, started_at, finished_at FROM tasks
        WHERE state = 'running' AND finished_at IS NULL),
     -- Each change, as what walking back past it does to the counts.
     d AS (
       SELECT ev.plan, v.e, v.dq, v.dr FROM ev CROSS JOIN LATERAL (VALUES
         (ev.created_at, -1, 0),
         (COALESCE(ev.started_at, ev.finished_at), 1, 0),
         (ev.started_at, 0, -1),
         (CASE WHEN ev.started_at IS NOT NULL THEN ev.finished_at END, 0, 1)) AS v(e, dq, dr)
        WHERE v.e > $1),
     -- The last minute whose start comes before the change: it and every earlier minute undo it.
     b AS (
       SELECT plan, LEAST(ceil(extract(epoch FROM e - $1::timestamptz) / 60)::int - 1, $2::int - 1) AS i,
              sum(dq) AS dq, sum(dr) AS dr
         FROM d GROUP BY 1, 2),
     plans AS (SELECT plan FROM cur UNION SELECT plan FROM b)
     SELECT m.i, p.plan,
            (COALESCE(max(cur.queued), 0) + COALESCE(sum(b.dq), 0))::int AS queued,
            (COALESCE(max(cur.running), 0) + COALESCE(sum(b.dr), 0))::int AS running
       FROM generate_series(0, $2::int - 1) AS m(i) CROSS JOIN plans p
       LEFT JOIN cur ON cur.plan = p.plan
       LEFT JOIN b ON b.plan = p.plan AND b.i >= m.i
      GROUP BY m.i, p.plan`,
    [from, minutes],
  );
  // Plans with nothing queued or running all window (a counter back at zero) are left out.
  const busy = [...new Set(rows.filter((r) => r.queued !== 0 || r.running !== 0).map((r) => r.plan))].sort();
  const points: ActiveByPlan[] = Array.from({ length: minutes }, (_, i) => ({
    at: new Date(from.getTime() + i * 60_000),
    queued: Object.fromEntries(busy.map((plan) => [plan, 0])),
    running: Object.fromEntries(busy.map((plan) => [plan, 0])),
  }));
  for (const r of rows) {
    if (!busy.includes(r.plan)) continue;
    points[r.i]!.queued[r.plan] = r.queued;
    points[r.i]!.running[r.plan] = r.running;
  }
  return points;
}
