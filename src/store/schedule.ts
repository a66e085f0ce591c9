import type { Queryable } from './db.ts';
import { fenceCte } from './leader.ts';

/** What the scheduler reads each tick to feed the policy. Times are epoch ms on the database's clock. */
export interface ScheduleSnapshot {
  nowMs: number;
  tasks: Array<{
    id: string;
    user_id: string;
    weight: number;
    state: 'queued' | 'running';
    created_ms: number;
    remaining: number;
    deadline_ms: number | null;
  }>;
  jobs: Array<{
    id: string;
    task_id: string;
    user_id: string;
    kind: 'transform' | 'generate' | 'store';
    resource: string;
    ready_ms: number;
    order: number;
    /** Images the job stands for; with the provider's capabilities, the requests it makes. */
    count: number;
  }>;
  /** `n` jobs in flight making `requests` requests. */
  inFlight: Array<{ resource: string; key_id: string | null; user_id: string; n: number; requests: number }>;
  keyRequests: Array<{ provider: string; key_id: string; t_ms: number }>;
  providerState: Array<{
    provider: string;
    key_id: string;
    effective_concurrency: number | null;
    cooldown_ms: number | null;
  }>;
  workerSlots: number;
}

export async function readScheduleSnapshot(
  q: Queryable,
  opts: { windowMs: number; workerStaleMs: number; maxJobs: number; maxJobsPerUser: number },
): Promise<ScheduleSnapshot> {
  const now = await q.query<{ ms: number }>(`SELECT (extract(epoch FROM now()) * 1000)::float8 AS ms`);
  // Each user's first jobs in task order: one tick never admits more than the free worker
  // slots, so a bounded head per user is all the policy needs, however long the backlog.
  const jobs = await q.query<ScheduleSnapshot['jobs'][number]>(
    `SELECT id, task_id, user_id, kind, resource, ready_ms, "order", count FROM (
       SELECT j.id, j.task_id, j.user_id, j.kind, j.resource, j.count, (extract(epoch FROM j.run_after) * 1000)::float8 AS ready_ms,
              (j.step_index * 100000 + j.first_index)::int AS "order",
              row_number() OVER (PARTITION BY j.user_id ORDER BY t.state = 'running' DESC, t.created_at, j.task_id, (j.kind = 'store') DESC, j.step_index, j.first_index) AS rn
         FROM jobs j JOIN tasks t ON t.id = j.task_id
        WHERE j.state = 'queued') head
      WHERE rn <= $1
      ORDER BY ready_ms, id
      LIMIT $2`,
    [opts.maxJobsPerUser, opts.maxJobs],
  );
  // Running tasks (for the task limits) and the tasks of the jobs above.
  const tasks = await q.query<ScheduleSnapshot['tasks'][number]>(
    `SELECT id, user_id, weight::float8 AS weight, state, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms,
            (images_total - images_done - images_failed)::int AS remaining,
            (extract(epoch FROM deadline_at) * 1000)::float8 AS deadline_ms
       FROM tasks
      WHERE (state = 'running' OR (id = ANY($1::text[]) AND state = 'queued' AND NOT cancel_requested))`,
    [[...new Set(jobs.rows.map((j) => j.task_id))]],
  );
  const inFlight = await q.query<ScheduleSnapshot['inFlight'][number]>(
    `SELECT resource, key_id, user_id, count(*)::int AS n, sum(requests)::int AS requests
       FROM jobs WHERE state IN ('admitted', 'running')
      GROUP BY resource, key_id, user_id`,
  );
  // Started requests count by start time within the window; requests not started yet always count.
  const keyRequests = await q.query<ScheduleSnapshot['keyRequests'][number]>(
    `SELECT provider, key_id, (extract(epoch FROM COALESCE(started_at, admitted_at)) * 1000)::float8 AS t_ms
       FROM key_requests
      WHERE started_at IS NULL OR started_at > now() - $1::int * interval '1 millisecond'
      ORDER BY t_ms`,
    [opts.windowMs],
  );
  const providerState = await q.query<ScheduleSnapshot['providerState'][number]>(
    `SELECT provider, key_id, effective_concurrency::float8 AS effective_concurrency,
            (extract(epoch FROM cooldown_until) * 1000)::float8 AS cooldown_ms FROM provider_state`,
  );
  const slots = await q.query<{ n: number }>(
    `SELECT COALESCE(sum(slots), 0)::int AS n FROM workers
      WHERE NOT stopping AND heartbeat_at > now() - $1::int * interval '1 millisecond'`,
    [opts.workerStaleMs],
  );
  return {
    nowMs: now.rows[0]!.ms,
    tasks: tasks.rows,
    jobs: jobs.rows,
    inFlight: inFlight.rows,
    keyRequests: keyRequests.rows,
    providerState: providerState.rows,
    workerSlots: slots.rows[0]?.n ?? 0,
  };
}

export interface AdmissionWrite {
  jobId: string;
  /** The key chosen for a provider call (a key_requests row is logged per request); undefined for store jobs. */
  keyId: string | undefined;
  /** Requests the call makes (default 1). */
  requests?: number | undefined;
}

/**
 * Writes admissions in one statement, fenced by the leader term: when `candidate` no longer
 * holds `term`, nothing is written and undefined is returned. One statement, no transaction
 * around it: the leader row is locked only while it runs, so a leader paused between round
 * trips never holds a standby back. Returns the tasks that started (their `running` event is
 * written and announced by the same statement).
 */
export async function writeAdmissions(
  q: Queryable,
  candidate: string,
  term: number,
  admissions: AdmissionWrite[],
): Promise<{ admitted: number; startedTasks: string[] } | undefined> {
  const payload = JSON.stringify(
    admissions.map((a) => ({ id: a.jobId, key_id: a.keyId ?? null, requests: Math.max(1, a.requests ?? 1) })),
  );
  const { rows } = await q.query<{ fenced: number; admitted: number; started: string[] | null }>(
    `WITH fence AS (${fenceCte('$2', '$3')}),
     admitted AS (
       UPDATE jobs SET state = 'admitted', key_id = x.key_id, admitted_at = now(), admitted_term = $3,
                       requests = x.requests
         FROM jsonb_to_recordset($1::jsonb) AS x(id text, key_id text, requests int)
        WHERE jobs.id = x.id AND jobs.state = 'queued' AND EXISTS (SELECT 1 FROM fence)
        RETURNING jobs.id, jobs.task_id, jobs.key_id, jobs.resource, jobs.kind, jobs.requests),
     requests AS (
       INSERT INTO key_requests (provider, key_id, job_id, admitted_at)
       SELECT a.resource, a.key_id, a.id, now() FROM admitted a, generate_series(1, a.requests)
        WHERE a.kind <> 'store' AND a.key_id IS NOT NULL),
     started AS (
       UPDATE tasks SET state = 'running', started_at = now(), updated_at = now()
        WHERE id IN (SELECT task_id FROM admitted) AND state = 'queued'
        RETURNING id, user_id),
     announced AS (
       INSERT INTO events (task_id, user_id, type, data)
       SELECT id, user_id, 'running', '{"state":"running"}'::jsonb FROM started
       RETURNING task_id, pg_notify('darkroom_task', task_id))
     SELECT (SELECT count(*) FROM fence)::int AS fenced,
            (SELECT count(*) FROM admitted)::int AS admitted,
            (SELECT array_agg(task_id) FROM announced) AS started,
            (SELECT count(pg_notify('darkroom_work', '')) FROM (SELECT 1 FROM admitted LIMIT 1) one) AS woke`,
    [payload, candidate, term],
  );
  const row = rows[0]!;
  if (row.fenced === 0) return undefined;
  return { admitted: row.admitted, startedTasks: row.started ?? [] };
}

/** Drops RPM log rows too old to matter. */
export async function pruneKeyRequests(q: Queryable, windowMs: number): Promise<void> {
  await q.query(
    `DELETE FROM key_requests WHERE started_at < now() - $1::int * interval '1 millisecond'
        OR (started_at IS NULL AND admitted_at < now() - interval '1 hour')`,
    [windowMs * 2],
  );
}

/**
 * Deadline cancels, set-based: locks up to `limit` queued tasks whose deadline has passed
 * (re-checked under the lock; rows held elsewhere are left for the next round), marks them
 * canceled, cancels their unstarted jobs and drops their key reservations, and records a
 * `cancel_requested` event for each, in one statement. The caller ends each task (refund)
 * in the same transaction. Returns the ids.
 */
export async function cancelExpiredQueuedTasks(
  tx: Queryable,
  limit: number,
  reason: string,
): Promise<string[]> {
  const { rows } = await tx.query<{ id: string }>(
    `WITH expired AS (
       SELECT id FROM tasks WHERE state = 'queued' AND deadline_at < now() AND NOT cancel_requested
        ORDER BY deadline_at LIMIT $1 FOR UPDATE SKIP LOCKED),
     marked AS (
       UPDATE tasks SET cancel_requested = true, error = COALESCE(error, $2), updated_at = now()
        WHERE id IN (SELECT id FROM expired) RETURNING id, user_id),
     canceled AS (
       UPDATE jobs SET state = 'canceled', finished_at = now()
        WHERE task_id IN (SELECT id FROM expired) AND state IN ('queued', 'admitted') RETURNING id),
     unreserved AS (
       DELETE FROM key_requests WHERE started_at IS NULL AND job_id IN (SELECT id FROM canceled)),
     announced AS (
       INSERT INTO events (task_id, user_id, type, data)
       SELECT id, user_id, 'cancel_requested', jsonb_build_object('reason', $2::text) FROM marked
       RETURNING task_id, pg_notify('darkroom_task', task_id))
     SELECT task_id AS id FROM announced`,
    [limit, reason],
  );
  return rows.map((r) => r.id);
}
