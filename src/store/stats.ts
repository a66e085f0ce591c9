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
  /** Provider calls queued, admitted or running for active tasks created before the given one. */
  callJobs: number;
  /** Active tasks ahead, by type and stage, with their image totals (for calls not yet fanned out). */
  byStage: Array<{ type: string; stage: string | null; tasks: number; images: number }>;
  queuedTasksAhead: number;
}

export async function workAhead(q: Queryable, task: { id: string; created_at: Date }): Promise<WorkAhead> {
  const jobs = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM jobs j JOIN tasks t ON t.id = j.task_id
      WHERE j.state IN ('queued', 'admitted', 'running') AND j.kind <> 'store'
        AND t.state IN ('queued', 'running') AND (t.created_at, t.id) < ($1::timestamptz, $2::text)`,
    [task.created_at, task.id],
  );
  const stages = await q.query<{ type: string; stage: string | null; tasks: number; images: number; queued: number }>(
    `SELECT type, stage, count(*)::int AS tasks, sum(images_total)::int AS images,
            count(*) FILTER (WHERE state = 'queued')::int AS queued
       FROM tasks WHERE state IN ('queued', 'running') AND (created_at, id) < ($1::timestamptz, $2::text)
      GROUP BY type, stage`,
    [task.created_at, task.id],
  );
  return {
    callJobs: jobs.rows[0]?.n ?? 0,
    byStage: stages.rows.map(({ type, stage, tasks, images }) => ({ type, stage, tasks, images })),
    queuedTasksAhead: stages.rows.reduce((n, r) => n + r.queued, 0),
  };
}
