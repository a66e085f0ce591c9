import type { Queryable } from './db.ts';

/** Small reads for the admin API and metrics: each an index range or a table of a few rows. */

export interface ActiveWorkerRow {
  id: string;
  host: string;
  pid: number;
  roles: string;
  slots: number;
  running: number;
  started_at: Date;
  heartbeat_at: Date;
  stopping: boolean;
}

/** Workers heard from within `staleMs`, with the jobs each runs now. */
export async function liveWorkers(q: Queryable, staleMs: number): Promise<ActiveWorkerRow[]> {
  const { rows } = await q.query<ActiveWorkerRow>(
    `SELECT w.id, w.host, w.pid, w.roles, w.slots, w.started_at, w.heartbeat_at, w.stopping,
            (SELECT count(*)::int FROM jobs j WHERE j.worker_id = w.id AND j.state = 'running') AS running
       FROM workers w
      WHERE w.heartbeat_at > now() - $1::int * interval '1 millisecond'
      ORDER BY w.started_at, w.id`,
    [staleMs],
  );
  return rows;
}

export interface QueueHeads {
  /** Seconds since the oldest queued task was submitted; null with none queued. */
  oldest_queued_age_seconds: number | null;
  oldest_queued_task_id: string | null;
  /** The longest-running task's running time, seconds; null with none running. */
  longest_running_seconds: number | null;
  longest_running_task_id: string | null;
  last_finished_at: Date | null;
  now: Date;
}

/** Both ends of the active-task index and the newest finish: three index probes. */
export async function queueHeads(q: Queryable): Promise<QueueHeads> {
  const { rows } = await q.query<QueueHeads>(
    `SELECT extract(epoch FROM now() - oq.created_at)::float8 AS oldest_queued_age_seconds, oq.id AS oldest_queued_task_id,
            extract(epoch FROM now() - lr.started_at)::float8 AS longest_running_seconds, lr.id AS longest_running_task_id,
            (SELECT max(finished_at) FROM tasks WHERE finished_at IS NOT NULL) AS last_finished_at,
            now() AS now
       FROM (SELECT 1) one
       LEFT JOIN LATERAL (SELECT id, created_at FROM tasks WHERE state = 'queued' ORDER BY state, created_at LIMIT 1) oq ON true
       LEFT JOIN LATERAL (SELECT id, started_at FROM tasks WHERE state = 'running' ORDER BY state, created_at LIMIT 1) lr ON true`,
  );
  return rows[0]!;
}

export interface ThroughputRow {
  minutes: number;
  tasks: number;
  images: number;
}

/** Tasks finished (and their images delivered) over the last 1, 5 and 15 minutes. */
export async function throughput(q: Queryable): Promise<ThroughputRow[]> {
  const { rows } = await q.query<{
    m1: number;
    i1: number;
    m5: number;
    i5: number;
    m15: number;
    i15: number;
  }>(
    `SELECT count(*) FILTER (WHERE finished_at > now() - interval '1 minute')::int AS m1,
            COALESCE(sum(images_done) FILTER (WHERE finished_at > now() - interval '1 minute'), 0)::int AS i1,
            count(*) FILTER (WHERE finished_at > now() - interval '5 minutes')::int AS m5,
            COALESCE(sum(images_done) FILTER (WHERE finished_at > now() - interval '5 minutes'), 0)::int AS i5,
            count(*)::int AS m15, COALESCE(sum(images_done), 0)::int AS i15
       FROM tasks WHERE finished_at > now() - interval '15 minutes'`,
  );
  const r = rows[0]!;
  return [
    { minutes: 1, tasks: r.m1, images: r.i1 },
    { minutes: 5, tasks: r.m5, images: r.i5 },
    { minutes: 15, tasks: r.m15, images: r.i15 },
  ];
}

export interface InFlightRow {
  resource: string;
  key_id: string | null;
  admitted: number;
  running: number;
}

/** Jobs admitted or running per resource and key (bounded by the configured capacity). */
export async function jobsInFlight(q: Queryable): Promise<InFlightRow[]> {
  const { rows } = await q.query<InFlightRow>(
    `SELECT resource, key_id, count(*) FILTER (WHERE state = 'admitted')::int AS admitted,
            count(*) FILTER (WHERE state = 'running')::int AS running
       FROM jobs WHERE state IN ('admitted', 'running') GROUP BY resource, key_id`,
  );
  return rows;
}

export interface KeyWindowRow {
  provider: string;
  key_id: string;
  requests: number;
}

/** Requests started (or reserved) per key within the last `windowMs`: the RPM log. */
export async function keyRequestsInWindow(q: Queryable, windowMs: number): Promise<KeyWindowRow[]> {
  const { rows } = await q.query<KeyWindowRow>(
    `SELECT provider, key_id, count(*)::int AS requests FROM key_requests
      WHERE COALESCE(started_at, admitted_at) > now() - $1::int * interval '1 millisecond'
      GROUP BY provider, key_id`,
    [windowMs],
  );
  return rows;
}
