import type { Queryable } from './db.ts';
import type { ImageRow } from './images.ts';
import { jobsAsJson, type JobOutput, type JobRow, type NewJob } from './jobs.ts';
import type { ProviderRead, ProviderStateRow } from './provider-state.ts';
import type { TaskRow } from './tasks.ts';

/**
 * The statements of a job attempt's hot path, each doing in one round trip what took several:
 * the claim returns the tasks the worker would read next, the outcome's lock takes the job and
 * its task together, the next stage's jobs go in with the stage change and its event. Every
 * statement is a round trip a worker's connection (on PGlite, the process's only one) waits for,
 * and a socket write and read on the event loop: at a few hundred jobs a second those were most
 * of the outcome path's time (docs/benchmarks.md, engine overhead).
 *
 * A row of the other table comes back as JSON (`to_jsonb`), so its timestamps are ISO strings
 * made Dates again here; bigints are JSON numbers, as the pg driver's INT8 parser makes them.
 */

const JOB_DATES = [
  'run_after',
  'admitted_at',
  'lease_expires_at',
  'started_at',
  'provider_done_at',
  'finished_at',
  'created_at',
];
const TASK_DATES = ['deadline_at', 'created_at', 'started_at', 'finished_at'];
const PROVIDER_DATES = ['cooldown_until', 'rest_until', 'congestion_until', 'updated_at'];

function revive<T>(json: Record<string, unknown>, dates: string[]): T {
  for (const k of dates) {
    const v = json[k];
    if (typeof v === 'string') json[k] = new Date(v);
  }
  return json as T;
}

/**
 * Claims up to `limit` admitted jobs and stamps their key reservations as started, with each
 * job's task (read, not locked: what an attempt needs of it does not change while it runs).
 * SKIP LOCKED inside a CTE with LIMIT: exactly the selected rows are updated (an `IN (SELECT …
 * LIMIT n)` form may be re-evaluated and claim more). Each claim bumps the lease token that
 * fences everything the attempt writes. One statement, so it needs no transaction of its own;
 * the reservations' stamp is the statement's now(), equal to the jobs' `started_at`.
 */
const CLAIM = /* sql */ `
  WITH picked AS (
    SELECT id FROM jobs WHERE state = 'admitted'
     ORDER BY admitted_at, id
     LIMIT $2
     FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE jobs j
       SET state = 'running', worker_id = $1, lease_token = j.lease_token + 1, attempts = j.attempts + 1,
           lease_expires_at = now() + $3::int * interval '1 millisecond', started_at = now(),
           provider_done_at = NULL
      FROM picked WHERE j.id = picked.id
    RETURNING j.*
  ), stamped AS (
    UPDATE key_requests k SET started_at = now()
      FROM claimed c WHERE k.started_at IS NULL AND k.job_id = c.id
    RETURNING k.id
  )
  SELECT c.*, to_jsonb(t) AS claimed_task, (SELECT count(*) FROM stamped) AS stamped
    FROM claimed c JOIN tasks t ON t.id = c.task_id`;

export interface Claim {
  job: JobRow;
  task: TaskRow;
}

export async function claimJobsWithTasks(
  q: Queryable,
  workerId: string,
  limit: number,
  leaseMs: number,
): Promise<Claim[]> {
  if (limit <= 0) return [];
  const { rows } = await q.query<JobRow & { claimed_task: Record<string, unknown>; stamped: number }>(CLAIM, [
    workerId,
    limit,
    leaseMs,
  ]);
  return rows.map(({ claimed_task, stamped: _stamped, ...job }) => ({
    job,
    task: revive<TaskRow>(claimed_task, TASK_DATES),
  }));
}

export async function claimJobs(
  q: Queryable,
  workerId: string,
  limit: number,
  leaseMs: number,
): Promise<JobRow[]> {
  return (await claimJobsWithTasks(q, workerId, limit, leaseMs)).map((c) => c.job);
}

/**
 * Locks a running job for its outcome, then its task (the lock order: job, then task), in one
 * statement: the job's CTE is materialized and locked as the join reads it, the task row by the
 * statement's FOR UPDATE once the joined row is out. Undefined when the lease was lost (a stale
 * attempt). The task is its latest committed version (a row changed while the lock was awaited
 * is read again), but anything else this statement reads is from before that wait: count
 * sibling jobs in a later statement. It also reads, unlocked, the AIMD row of the job's
 * provider and its key's run of hint-less 429s, which a call's success decides on
 * (recordProviderSuccess locks the row only when the success moves it).
 */
export async function lockRunningJobWithTask(
  tx: Queryable,
  id: string,
  token: number,
): Promise<(Claim & { provider: ProviderRead }) | undefined> {
  const { rows } = await tx.query<
    TaskRow & {
      locked_job: Record<string, unknown>;
      provider_row: Record<string, unknown> | null;
      key_unhinted_streak: number | null;
    }
  >(
    `WITH j AS MATERIALIZED (
       SELECT * FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR UPDATE)
     SELECT t.*, to_jsonb(j) AS locked_job, to_jsonb(p) AS provider_row, pk.unhinted_streak AS key_unhinted_streak
       FROM j JOIN tasks t ON t.id = j.task_id
       LEFT JOIN provider_state p ON p.provider = j.resource AND p.key_id = ''
       LEFT JOIN provider_state pk ON pk.provider = j.resource AND pk.key_id = j.key_id
        FOR UPDATE OF t`,
    [id, token],
  );
  const row = rows[0];
  if (!row) return undefined;
  const { locked_job, provider_row, key_unhinted_streak, ...task } = row;
  return {
    job: revive<JobRow>(locked_job, JOB_DATES),
    task: task as TaskRow,
    provider: {
      row: provider_row ? revive<ProviderStateRow>(provider_row, PROVIDER_DATES) : undefined,
      keyUnhintedStreak: key_unhinted_streak ?? 0,
    },
  };
}

const INSERT_JOBS = /* sql */ `
  INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state, max_attempts, input)
  SELECT x.id, x.task_id, x.user_id, x.step_index, x.step_name, x.kind, x.resource, x.first_index, x.count,
         'queued', x.max_attempts, x.input
    FROM jsonb_to_recordset($1::jsonb) AS x(id text, task_id text, user_id text, step_index int, step_name text,
         kind text, resource text, first_index int, count int, max_attempts int, input jsonb)
  RETURNING 1`;

/** A task's move to the stage of jobs it is given, with its `stage` event. */
export interface StageChange {
  taskId: string;
  userId: string;
  name: string;
}

/**
 * The stage change and its event as CTEs of a statement whose jobs are `$1`: `$2` the stage,
 * `$3` the task, `$4` its user (all null: no change).
 */
const STAGE_CTES = /* sql */ `
  staged AS (
    UPDATE tasks SET stage = $2, updated_at = now()
     WHERE $2::text IS NOT NULL AND id = $3 AND stage IS DISTINCT FROM $2 RETURNING id),
  ev AS (
    INSERT INTO events (task_id, user_id, type, data)
    SELECT id, $4, 'stage', jsonb_build_object('stage', $2::text) FROM staged
    RETURNING pg_notify('darkroom_task', task_id))`;

/**
 * Ends a job as succeeded and counts its task's other open jobs. It does not NOTIFY: the caller
 * wakes the scheduler once the transaction has committed (store/wake.ts says why).
 */
const COMPLETE_JOB = (id: string, output: string, condition = 'true') => /* sql */ `
  UPDATE jobs SET state = 'succeeded', output = ${output}::jsonb, finished_at = now(), lease_expires_at = NULL, error = NULL
   WHERE id = ${id} AND ${condition}
  RETURNING (SELECT count(*)::int FROM jobs o
              WHERE o.task_id = jobs.task_id AND o.id <> jobs.id AND o.state IN ('queued', 'admitted', 'running')) AS active`;

/**
 * Inserts a task's next jobs; with `stage`, moves the task to that stage and records its
 * `stage` event (with the SSE wake-up) in the same statement. The task must be locked already
 * (the jobs' foreign key takes a key-share lock on it). Returns how many jobs went in.
 */
export async function insertNextJobs(tx: Queryable, jobs: NewJob[], stage?: StageChange): Promise<number> {
  if (jobs.length === 0 && !stage) return 0;
  if (!stage) {
    const { rowCount } = await tx.query(INSERT_JOBS, [jobsAsJson(jobs)]);
    return rowCount;
  }
  const { rows } = await tx.query<{ inserted: number }>(
    `WITH ins AS (${INSERT_JOBS}), ${STAGE_CTES}
     SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM ev)::int AS events`,
    [jobsAsJson(jobs), stage.name, stage.taskId, stage.userId],
  );
  return rows[0]!.inserted;
}

/**
 * A call's success in one statement after the outcome's lock: the job ends as succeeded, its
 * task's next jobs go in, with the stage change and its event. The caller wakes the scheduler
 * after the commit (store/wake.ts).
 * Returns the task's jobs still queued, admitted or running, the new ones included: exact, as the
 * task row was locked by an earlier statement of this transaction, so this statement's snapshot
 * holds every outcome of the task that committed before (see lockRunningJobWithTask).
 */
export async function completeJobWithNext(
  tx: Queryable,
  jobId: string,
  output: JobOutput,
  jobs: NewJob[],
  stage?: StageChange,
): Promise<number> {
  const { rows } = await tx.query<{ active: number; inserted: number }>(
    `WITH ins AS (${INSERT_JOBS}), ${STAGE_CTES},
     done AS (${COMPLETE_JOB('$5', '$6')})
     SELECT (SELECT active FROM done) + (SELECT count(*)::int FROM ins) AS active,
            (SELECT count(*)::int FROM ev) AS events`,
    [
      jobsAsJson(jobs),
      stage?.name ?? null,
      stage?.taskId ?? null,
      stage?.userId ?? null,
      jobId,
      JSON.stringify(output),
    ],
  );
  return rows[0]!.active;
}

/** What a store job's attempt writes of its images (see recordStoredImages). */
export interface StoredImages {
  taskId: string;
  jobId: string;
  images: ImageRow[];
  /** Images that were not images: failed for good. */
  rejected: number;
  /** The task's error when some were rejected (kept if it has one). */
  error: string | null;
  /** The job's output when it ends as succeeded here; undefined when images are still owed. */
  complete: JobOutput | undefined;
}

/**
 * A store job's attempt in one statement after the outcome's lock: its image rows (an index
 * stored by an earlier attempt changes nothing), the task's counters and, when they moved, its
 * `progress` event, and the job's end as succeeded. The caller wakes the scheduler and the
 * task's SSE streams after the commit (store/wake.ts). Returns the task as written (undefined when
 * no counter moved) and, when the job was completed, its task's jobs still queued, admitted or
 * running (exact for the reason given at completeJobWithNext).
 */
export async function recordStoredImages(
  tx: Queryable,
  s: StoredImages,
): Promise<{ task: TaskRow | undefined; active: number | undefined }> {
  const { rows } = await tx.query<{ task: Record<string, unknown> | null; active: number | null }>(
    `WITH ins AS (
       INSERT INTO images (task_id, index, storage_key, thumb_key, mime, width, height, thumb_width, thumb_height, bytes, sha256, cached)
       SELECT x.task_id, x.index, x.storage_key, x.thumb_key, x.mime, x.width, x.height, x.thumb_width, x.thumb_height,
              x.bytes, x.sha256, x.cached
         FROM jsonb_to_recordset($1::jsonb) AS x(task_id text, index int, storage_key text, thumb_key text, mime text,
              width int, height int, thumb_width int, thumb_height int, bytes int, sha256 text, cached boolean)
        ORDER BY x.index
       ON CONFLICT (task_id, index) DO NOTHING
       RETURNING 1),
     n AS (SELECT count(*)::int AS inserted FROM ins),
     t AS (
       UPDATE tasks SET images_done = images_done + n.inserted,
                        images_failed = LEAST(images_total - images_done - n.inserted, images_failed + $3),
                        error = COALESCE(error, $4), updated_at = now()
         FROM n WHERE tasks.id = $2 AND (n.inserted > 0 OR $3 > 0)
       RETURNING tasks.*),
     ev AS (
       INSERT INTO events (task_id, user_id, type, data)
       SELECT id, user_id, 'progress',
              jsonb_build_object('done', images_done, 'failed', images_failed, 'total', images_total)
         FROM t
       RETURNING id),
     done AS (${COMPLETE_JOB('$5', '$6', '$7::boolean')})
     SELECT (SELECT to_jsonb(t) FROM t) AS task, (SELECT active FROM done) AS active,
            (SELECT count(*)::int FROM ev) AS events`,
    [
      JSON.stringify(s.images),
      s.taskId,
      s.rejected,
      s.error,
      s.jobId,
      JSON.stringify(s.complete ?? null),
      s.complete !== undefined,
    ],
  );
  const row = rows[0]!;
  return {
    task: row.task ? revive<TaskRow>(row.task, TASK_DATES) : undefined,
    active: row.active ?? undefined,
  };
}
