import type { Queryable } from './db.ts';

/** Mean duration of the last successful jobs on a resource (ms); undefined with no history. */
export async function meanJobMs(q: Queryable, resource: string, kind: 'call' | 'store'): Promise<number | undefined> {
  const { rows } = await q.query<{ ms: number | null }>(
    `SELECT avg(ms)::float8 AS ms FROM (
       SELECT extract(epoch FROM finished_at - started_at) * 1000 AS ms FROM jobs
        WHERE resource = $1 AND state = 'succeeded' AND (kind = 'store') = $2
        ORDER BY finished_at DESC LIMIT 100) recent`,
    [resource, kind === 'store'],
  );
  const ms = rows[0]?.ms;
  return ms === null || ms === undefined ? undefined : Number(ms);
}

export interface WorkAhead {
  /** Active tasks ahead, by type and stage, with the images they have not finished. */
  byStage: Array<{ type: string; stage: string | null; tasks: number; remaining: number }>;
  queuedTasksAhead: number;
}

/** The work of the queued and running tasks created before `task` (one pass over active tasks). */
export async function workAhead(q: Queryable, task: { id: string; created_at: Date }): Promise<WorkAhead> {
  const stages = await q.query<{ type: string; stage: string | null; tasks: number; remaining: number; queued: number }>(
    `SELECT type, stage, count(*)::int AS tasks, sum(images_total - images_done - images_failed)::int AS remaining,
            count(*) FILTER (WHERE state = 'queued')::int AS queued
       FROM tasks WHERE state IN ('queued', 'running') AND (created_at, id) < ($1::timestamptz, $2::text)
      GROUP BY type, stage`,
    [task.created_at, task.id],
  );
  return {
    byStage: stages.rows.map(({ type, stage, tasks, remaining }) => ({ type, stage, tasks, remaining })),
    queuedTasksAhead: stages.rows.reduce((n, r) => n + r.queued, 0),
  };
}
