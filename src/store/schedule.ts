import type { Queryable } from './db.ts';
import { fenceCte } from './leader.ts';

/** What the scheduler reads each pass to feed the policy. Times are epoch ms on the database's clock. */
export interface ScheduleSnapshot extends CapacitySnapshot, QueueHead {}

/** Capacity in use: small, whatever the backlog (in-flight jobs, the RPM log, AIMD state, workers). */
export interface CapacitySnapshot {
  nowMs: number;
  /**
   * `n` jobs in flight (admitted or running, until their outcome) making `requests` requests, of
   * which `open` are still open at the provider: not started, or started and not answered yet.
   */
  inFlight: Array<{
    resource: string;
    key_id: string | null;
    user_id: string;
    n: number;
    requests: number;
    open?: number | undefined;
  }>;
  keyRequests: Array<{ provider: string; key_id: string; t_ms: number }>;
  providerState: Array<{
    provider: string;
    key_id: string;
    effective_concurrency: number | null;
    cooldown_ms: number | null;
  }>;
  workerSlots: number;
}

/** The part of the queue one pass needs. */
export interface QueueHead {
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
}

export async function readCapacity(
  q: Queryable,
  opts: { windowMs: number; workerStaleMs: number },
): Promise<CapacitySnapshot> {
  // One statement, so one round trip a pass and one snapshot of everything it reads. Started
  // requests count by start time within the window; requests not started yet always count. A
  // running job whose provider answer is in (provider_done_at) is no longer open at the provider.
  const { rows } = await q.query<{
    now_ms: number;
    in_flight: CapacitySnapshot['inFlight'];
    key_requests: CapacitySnapshot['keyRequests'];
    provider_state: CapacitySnapshot['providerState'];
    slots: number;
  }>(
    `SELECT (extract(epoch FROM now()) * 1000)::float8 AS now_ms,
            (SELECT COALESCE(json_agg(f), '[]') FROM (
               SELECT resource, key_id, user_id, count(*)::int AS n, sum(requests)::int AS requests,
                      COALESCE(sum(requests) FILTER (WHERE state = 'admitted' OR provider_done_at IS NULL), 0)::int AS open
                 FROM jobs WHERE state IN ('admitted', 'running')
                GROUP BY resource, key_id, user_id) f) AS in_flight,
            (SELECT COALESCE(json_agg(r ORDER BY r.t_ms), '[]') FROM (
               SELECT provider, key_id, (extract(epoch FROM COALESCE(started_at, admitted_at)) * 1000)::float8 AS t_ms
                 FROM key_requests
                WHERE started_at IS NULL OR started_at > now() - $1::int * interval '1 millisecond') r) AS key_requests,
            (SELECT COALESCE(json_agg(p), '[]') FROM (
               SELECT provider, key_id, effective_concurrency::float8 AS effective_concurrency,
                      (extract(epoch FROM cooldown_until) * 1000)::float8 AS cooldown_ms
                 FROM provider_state) p) AS provider_state,
            (SELECT COALESCE(sum(slots), 0)::int FROM workers
              WHERE NOT stopping AND heartbeat_at > now() - $2::int * interval '1 millisecond') AS slots`,
    [opts.windowMs, opts.workerStaleMs],
  );
  const row = rows[0]!;
  return {
    nowMs: row.now_ms,
    inFlight: row.in_flight,
    keyRequests: row.key_requests,
    providerState: row.provider_state,
    workerSlots: row.slots,
  };
}

/** How much of the queue to read: at most `k` ready jobs per user on each resource. */
export interface HeadLimits {
  nowMs: number;
  /** Expected admission → start delay: a queued task whose deadline comes sooner cannot start. */
  dispatchMs: number;
  /** Per resource, the ready jobs per user one pass could look at (what it can admit there, plus one). */
  perResource: Array<{ resource: string; k: number }>;
  /** The task types that start on each resource (their pipeline's first step): queued tasks' jobs. */
  startsOn: Array<{ resource: string; types: string[] }>;
  /**
   * Whose queued tasks to read: these users, every user with a running task and every user with
   * a retried task (readFairOrder picks the others). Omitted: every user with queued tasks.
   */
  users?: string[] | undefined;
}

// Shared SQL pieces. A job is ready when the policy would call it ready (same float
// arithmetic as decide(): readyAtMs <= nowMs); a job's task counts when it runs, or is queued,
// not canceled and can still start before its deadline (decide()'s cannotMeetDeadline).
const READY_MS = `(extract(epoch FROM j.run_after) * 1000)::float8`;
const TASK_USABLE = `(t.state = 'running' OR (t.state = 'queued' AND NOT t.cancel_requested AND
   (t.deadline_at IS NULL OR NOT ($1::float8 + $2::float8 > (extract(epoch FROM t.deadline_at) * 1000)::float8))))`;
const JOB_COLUMNS = `j.id, j.task_id, j.user_id, j.kind, j.resource, j.count, ${READY_MS} AS ready_ms,
   (j.step_index * 100000 + j.first_index)::int AS "order"`;
// decide()'s order inside a user (compareJobs), ids compared as JavaScript compares strings.
const JOB_ORDER = `(j.kind <> 'store'), j.step_index, j.first_index, j.id COLLATE "C"`;
// Tasks that have not started, in `tasks_queued_fair` (readFairOrder).
const QUEUED_FAIR = `state = 'queued' AND NOT cancel_requested AND attempt = 1`;

/**
 * The head of the queue one pass can use, read in time bounded by the pass, not the backlog
 * (test/store/schedule-head.test.ts checks that decide() on it decides exactly as on the
 * whole queue). Per user and resource, the first `k` ready jobs in the policy's order: a pass
 * admits at most k − 1 there, and the k-th lets it find the resource full. Plus, per user,
 * the oldest ready job (its aging) and, overall, the soonest job still waiting on a backoff
 * (the wake-up), and every running task (the limits).
 *
 * Running tasks are few (maxRunningTasks); their queued jobs are read through them. Queued
 * tasks are read per user in creation order from `tasks_queued_by_user` (a LATERAL … LIMIT
 * over `limits.users` and the users a pass always reads, or over every user with queued tasks,
 * found with a skip scan of the same index), only on the
 * resource their pipeline starts on: a task that has not started has no other jobs, unless an
 * administrator retried it (attempt > 1): those are read apart, from `tasks_queued_retried`.
 */
export async function readQueueHead(q: Queryable, limits: HeadLimits): Promise<QueueHead> {
  const now = limits.nowMs;
  const dispatch = limits.dispatchMs;
  const perResource = JSON.stringify(limits.perResource);
  // Driven by the running tasks (few), each task's queued jobs per resource through `jobs_task`
  // (task_id, state): the LATERAL … LIMIT keeps the planner from joining the other way round
  // (every queued job, then its task), which it picks when the tables have no statistics and
  // which reads the whole backlog. A task's first k jobs on a resource are all a user's first k
  // there can take from it.
  const running = await q.query<QueueHead['jobs'][number]>(
    `SELECT id, task_id, user_id, kind, resource, count, ready_ms, "order" FROM (
       SELECT ${JOB_COLUMNS}, l.k,
              row_number() OVER (PARTITION BY j.user_id, j.resource
                                 ORDER BY t.created_at, t.id COLLATE "C", ${JOB_ORDER}) AS rn
         FROM tasks t
        CROSS JOIN jsonb_to_recordset($2::jsonb) AS l(resource text, k int)
        CROSS JOIN LATERAL (
          SELECT * FROM jobs j
           WHERE j.task_id = t.id AND j.state = 'queued' AND j.resource = l.resource
             AND ${READY_MS} <= $1::float8
           ORDER BY ${JOB_ORDER} LIMIT l.k) j
        WHERE t.state = 'running') head
      WHERE rn <= k`,
    [now, perResource],
  );
  const starts = limits.startsOn
    .map((s) => ({ ...s, k: limits.perResource.find((r) => r.resource === s.resource)?.k ?? 0 }))
    .filter((s) => s.k > 0 && s.types.length > 0);
  // Every user with queued tasks (a skip scan), or the users given and those a pass always reads.
  const userSource = limits.users
    ? `users AS (
           SELECT unnest($4::text[]) AS user_id
           UNION SELECT user_id FROM tasks WHERE state = 'running'
           UNION SELECT user_id FROM tasks WHERE state = 'queued' AND attempt > 1 AND NOT cancel_requested)`
    : `RECURSIVE users AS (
           (SELECT user_id FROM tasks WHERE state = 'queued' AND NOT cancel_requested ORDER BY user_id LIMIT 1)
           UNION ALL
           SELECT n.user_id FROM users u CROSS JOIN LATERAL (
             SELECT user_id FROM tasks
              WHERE state = 'queued' AND NOT cancel_requested AND user_id > u.user_id
              ORDER BY user_id LIMIT 1) n)`;
  const queued = starts.length
    ? await q.query<QueueHead['jobs'][number]>(
        `WITH ${userSource}
         SELECT h.* FROM users u
         CROSS JOIN jsonb_to_recordset($3::jsonb) AS r(resource text, types text[], k int)
         CROSS JOIN LATERAL (
           SELECT ${JOB_COLUMNS}
             FROM (
               -- The user's first k startable tasks, straight from the index order.
               SELECT t.id, t.created_at FROM tasks t
                WHERE t.user_id = u.user_id AND t.state = 'queued' AND NOT t.cancel_requested
                  AND t.type = ANY(r.types) AND ${TASK_USABLE}
                  AND EXISTS (SELECT 1 FROM jobs j WHERE j.task_id = t.id AND j.state = 'queued'
                                 AND j.resource = r.resource AND ${READY_MS} <= $1::float8)
                ORDER BY t.created_at, t.id COLLATE "C" LIMIT r.k) t
             CROSS JOIN LATERAL (
               SELECT * FROM jobs j
                WHERE j.task_id = t.id AND j.state = 'queued' AND j.resource = r.resource
                  AND ${READY_MS} <= $1::float8
                ORDER BY ${JOB_ORDER} LIMIT r.k) j
            ORDER BY t.created_at, t.id COLLATE "C", ${JOB_ORDER}
            LIMIT r.k) h`,
        limits.users
          ? [now, dispatch, JSON.stringify(starts), limits.users]
          : [now, dispatch, JSON.stringify(starts)],
      )
    : { rows: [] };
  // Retried tasks (few: an administrator's doing) are queued with jobs of the step they resume
  // at, on any resource: per user and resource, their first k ready jobs in the policy's order.
  const retried = await q.query<QueueHead['jobs'][number]>(
    `SELECT id, task_id, user_id, kind, resource, count, ready_ms, "order" FROM (
       SELECT ${JOB_COLUMNS}, l.k,
              row_number() OVER (PARTITION BY j.user_id, j.resource
                                 ORDER BY t.created_at, t.id COLLATE "C", ${JOB_ORDER}) AS rn
         FROM tasks t
         JOIN jobs j ON j.task_id = t.id AND j.state = 'queued'
         JOIN jsonb_to_recordset($3::jsonb) AS l(resource text, k int) ON l.resource = j.resource
        WHERE t.state = 'queued' AND t.attempt > 1 AND NOT t.cancel_requested AND ${TASK_USABLE}
          AND ${READY_MS} <= $1::float8) head
      WHERE rn <= k`,
    [now, dispatch, perResource],
  );
  const users = [...new Set([...running.rows, ...queued.rows, ...retried.rows].map((j) => j.user_id))];
  // Aging: each user's oldest ready job; the wake-up: the soonest job not ready yet.
  const extra = await q.query<QueueHead['jobs'][number]>(
    `SELECT o.* FROM unnest($3::text[]) AS u(user_id)
     CROSS JOIN LATERAL (
       SELECT ${JOB_COLUMNS} FROM jobs j JOIN tasks t ON t.id = j.task_id
        WHERE j.user_id = u.user_id AND j.state = 'queued' AND ${READY_MS} <= $1::float8 AND ${TASK_USABLE}
        ORDER BY j.run_after, j.id LIMIT 1) o
     UNION ALL
     (SELECT ${JOB_COLUMNS} FROM jobs j JOIN tasks t ON t.id = j.task_id
       WHERE j.state = 'queued' AND j.run_after > to_timestamp($1::float8 / 1000) - interval '1 millisecond'
         AND ${READY_MS} > $1::float8 AND ${TASK_USABLE}
       ORDER BY j.run_after, j.id LIMIT 1)`,
    [now, dispatch, users],
  );
  const jobs = new Map<string, QueueHead['jobs'][number]>();
  for (const j of [...running.rows, ...queued.rows, ...retried.rows, ...extra.rows]) jobs.set(j.id, j);
  const taskIds = [...new Set([...jobs.values()].map((j) => j.task_id))];
  // Two branches (disjoint by state): the running tasks from the index on state, the others by
  // id from the primary key. One OR'd condition was planned as a bitmap of every active task
  // when the tables have no statistics, and so was `id = ANY … AND state = 'queued' AND NOT
  // cancel_requested` (the partial `tasks_queued_by_user` matches the state): one lookup per
  // id, OFFSET 0 keeping the state test above it.
  const TASK_COLUMNS = `id, user_id, weight::float8 AS weight, state, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms,
            (images_total - images_done - images_failed)::int AS remaining,
            (extract(epoch FROM deadline_at) * 1000)::float8 AS deadline_ms`;
  const tasks = await q.query<QueueHead['tasks'][number]>(
    `SELECT ${TASK_COLUMNS} FROM tasks WHERE state = 'running'
     UNION ALL
     SELECT ${TASK_COLUMNS} FROM unnest($1::text[]) AS x(task_id)
      CROSS JOIN LATERAL (SELECT * FROM tasks WHERE tasks.id = x.task_id OFFSET 0) t
      WHERE state = 'queued' AND NOT cancel_requested`,
    [taskIds],
  );
  return { tasks: tasks.rows, jobs: [...jobs.values()] };
}

/** The fair-share settings the order of users depends on (policy FairnessSettings). */
export interface FairOrderSettings {
  nowMs: number;
  agingSeconds: number;
  shortWorkPreference: number;
  maxUnits: number;
}

/**
 * Users with tasks that have not started (attempt 1), by a lower bound of their fair-share
 * score (policy userScore with nothing in flight): the first `limit` such tasks by
 *   1 / w'(task) − (now − created) / agingMs,   w' = weight × (maxUnits / images left)^p,
 * merged over the fair-share classes (weight, images left; few: one per plan) from
 * `tasks_queued_fair`. Such a task's jobs are the ones its submit wrote, ready at its creation,
 * so a user's score is at least its lowest task's bound (its waiting counts from its first
 * ready task or later). `bound`: every task not returned has a bound not below it (undefined
 * when every task was returned).
 */
export async function readFairOrder(
  q: Queryable,
  s: FairOrderSettings,
  limit: number,
): Promise<{ users: string[]; bound: number | undefined }> {
  const { rows } = await q.query<{ user_id: string; bound: number }>(
    `WITH RECURSIVE classes AS (
       (SELECT weight, images_total - images_done - images_failed AS left
          FROM tasks WHERE ${QUEUED_FAIR} ORDER BY 1, 2 LIMIT 1)
       UNION ALL
       SELECT n.* FROM classes c CROSS JOIN LATERAL (
         SELECT weight, images_total - images_done - images_failed AS left
           FROM tasks
          WHERE ${QUEUED_FAIR}
            AND (weight, images_total - images_done - images_failed) > (c.weight, c.left)
          ORDER BY 1, 2 LIMIT 1) n)
     SELECT t.user_id,
            1 / (c.weight::float8 * power($4::float8 / LEAST($4::float8, GREATEST(1, c.left))::float8, $3::float8))
              - ($1::float8 - t.created_ms) / ($2::float8 * 1000) AS bound
       FROM classes c
      CROSS JOIN LATERAL (
        SELECT user_id, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms
          FROM tasks
         WHERE ${QUEUED_FAIR} AND weight = c.weight AND images_total - images_done - images_failed = c.left
         ORDER BY created_at LIMIT $5) t
      ORDER BY bound LIMIT $5`,
    [s.nowMs, s.agingSeconds, s.shortWorkPreference, Math.max(1, s.maxUnits), limit + 1],
  );
  const more = rows.length > limit;
  return {
    users: [...new Set(rows.slice(0, limit).map((r) => r.user_id))],
    bound: more ? rows[limit]!.bound : undefined,
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
