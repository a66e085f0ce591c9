import type { Queryable } from './db.ts';
import { jobsAsJson, type JobRow, type NewJob } from './jobs.ts';
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

/**
 * Inserts a task's next jobs; with `stage`, moves the task to that stage and records its
 * `stage` event (with the SSE wake-up) in the same statement. The task must be locked already
 * (the jobs' foreign key takes a key-share lock on it). Returns how many jobs went in.
 */
export async function insertNextJobs(
  tx: Queryable,
  jobs: NewJob[],
  stage?: { taskId: string; userId: string; name: string },
): Promise<number> {
  if (jobs.length === 0 && !stage) return 0;
  const insert = /* sql */ `
    INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state, max_attempts, input)
    SELECT x.id, x.task_id, x.user_id, x.step_index, x.step_name, x.kind, x.resource, x.first_index, x.count,
           'queued', x.max_attempts, x.input
      FROM jsonb_to_recordset($1::jsonb) AS x(id text, task_id text, user_id text, step_index int, step_name text,
           kind text, resource text, first_index int, count int, max_attempts int, input jsonb)
    RETURNING 1`;
  if (!stage) {
    const { rowCount } = await tx.query(insert, [jobsAsJson(jobs)]);
    return rowCount;
  }
  const { rows } = await tx.query<{ inserted: number }>(
    `WITH ins AS (${insert}),
     staged AS (
       UPDATE tasks SET stage = $2, updated_at = now() WHERE id = $3 AND stage IS DISTINCT FROM $2 RETURNING id),
     ev AS (
       INSERT INTO events (task_id, user_id, type, data)
       SELECT id, $4, 'stage', jsonb_build_object('stage', $2::text) FROM staged
       RETURNING pg_notify('darkroom_task', task_id))
     SELECT (SELECT count(*) FROM ins)::int AS inserted, (SELECT count(*) FROM ev)::int AS events`,
    [jobsAsJson(jobs), stage.name, stage.taskId, stage.userId],
  );
  return rows[0]!.inserted;
}
