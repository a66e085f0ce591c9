import type { Queryable } from './db.ts';

/**
 * Job states and who moves them:
 *   queued ──scheduler admits (term-fenced)──► admitted ──worker claims (lease token +1)──► running
 *   running ──worker records outcome (token-fenced)──► succeeded | failed | queued (retry / 429)
 *   running ──lease expires, reaper──► queued (or failed when attempts are spent)
 *   admitted ──not claimed in time, reaper──► queued
 *   queued | admitted ──cancel / deadline──► canceled
 */
export type JobState = 'queued' | 'admitted' | 'running' | 'succeeded' | 'failed' | 'canceled';
export type JobKind = 'transform' | 'generate' | 'store';

export interface JobInput {
  /** Storage keys of the images this job consumes (staged outputs of an earlier step). */
  keys?: string[];
  /** Store jobs: the image came from the result cache, not from a provider call. */
  cached?: boolean;
  /**
   * Store jobs: the image index of each key. Absent: `first_index + i`. Written when an attempt
   * stored some of the job's images and the job shrank to the others (they need not be consecutive).
   */
  indices?: number[];
}

export interface JobOutput {
  keys: string[];
}

export interface JobRow {
  id: string;
  task_id: string;
  user_id: string;
  step_index: number;
  step_name: string;
  kind: JobKind;
  resource: string;
  first_index: number;
  count: number;
  state: JobState;
  key_id: string | null;
  attempts: number;
  max_attempts: number;
  run_after: Date;
  admitted_at: Date | null;
  lease_token: number;
  lease_expires_at: Date | null;
  worker_id: string | null;
  started_at: Date | null;
  /** When the current attempt's provider answer arrived (null before, and for store jobs). */
  provider_done_at: Date | null;
  finished_at: Date | null;
  remote_ref: string | null;
  input: JobInput;
  output: JobOutput | null;
  error: string | null;
  created_at: Date;
}

export interface NewJob {
  id: string;
  taskId: string;
  userId: string;
  stepIndex: number;
  stepName: string;
  kind: JobKind;
  resource: string;
  firstIndex: number;
  count: number;
  maxAttempts: number;
  input: JobInput;
}

/** New jobs as the JSON array `jsonb_to_recordset` reads (snake_case columns). */
export function jobsAsJson(jobs: NewJob[]): string {
  return JSON.stringify(jobsAsRecords(jobs));
}

/** The jobs as the rows `jsonb_to_recordset` reads. */
export function jobsAsRecords(jobs: NewJob[]): Array<Record<string, unknown>> {
  return jobs.map((j) => ({
    id: j.id,
    task_id: j.taskId,
    user_id: j.userId,
    step_index: j.stepIndex,
    step_name: j.stepName,
    kind: j.kind,
    resource: j.resource,
    first_index: j.firstIndex,
    count: j.count,
    max_attempts: j.maxAttempts,
    input: j.input,
  }));
}

export async function insertJobs(tx: Queryable, jobs: NewJob[]): Promise<void> {
  if (jobs.length === 0) return;
  await tx.query(
    `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state, max_attempts, input)
     SELECT x.id, x.task_id, x.user_id, x.step_index, x.step_name, x.kind, x.resource, x.first_index, x.count,
            'queued', x.max_attempts, x.input
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, task_id text, user_id text, step_index int, step_name text,
            kind text, resource text, first_index int, count int, max_attempts int, input jsonb)`,
    [jobsAsJson(jobs)],
  );
}

/**
 * Stamps the attempt's provider requests as starting now, just before they leave. The claim
 * stamped them (and the job's `started_at`) with the claim's time, and the scheduler counts a
 * key's RPM window from that stamp; the provider counts from when a request arrives. Loading
 * inputs or waiting for a pool connection can put seconds between the two. The new stamp is only
 * ever later (the safe direction), and the job's `started_at` moves with it, so the attempt's own
 * rows stay the ones whose stamp equals the job's. False, and nothing written, when the attempt
 * no longer runs under its lease token: it must not send anything.
 */
export async function restampAttemptRequests(
  q: Queryable,
  jobId: string,
  leaseToken: number,
): Promise<boolean> {
  const { rows } = await q.query<{ held: boolean }>(
    // Every part reads the statement's one snapshot: \`attempt\` sees the stamp before \`job\` moves it
    // (a FOR UPDATE there would skip the row this same statement updates).
    `WITH attempt AS (
       SELECT started_at FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'running'),
     job AS (
       UPDATE jobs SET started_at = GREATEST(started_at, now())
        WHERE id = $1 AND lease_token = $2 AND state = 'running' RETURNING id),
     requests AS (
       UPDATE key_requests k SET started_at = GREATEST(k.started_at, now())
         FROM attempt WHERE k.job_id = $1 AND k.started_at = attempt.started_at RETURNING k.id)
     SELECT EXISTS (SELECT 1 FROM job) AS held`,
    [jobId, leaseToken],
  );
  return rows[0]!.held;
}

/**
 * The attempt's provider answer has arrived (all of its requests answered): from now on the job
 * no longer counts against its provider's and key's concurrency (store/schedule.ts
 * readCapacity), though it holds its worker slot until its outcome. Fenced by the lease token,
 * so a stale attempt cannot mark the attempt that replaced it; wakes the scheduler, whose pass
 * can now start the next call there. False when the attempt no longer runs.
 */
export async function markProviderDone(q: Queryable, jobId: string, leaseToken: number): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE jobs SET provider_done_at = now()
      WHERE id = $1 AND lease_token = $2 AND state = 'running' AND provider_done_at IS NULL
      RETURNING ${WAKE_SCHEDULER}`,
    [jobId, leaseToken],
  );
  return rowCount > 0;
}

/** Extends the leases this worker still holds; returns the ids it still holds. */
export async function renewLeases(
  q: Queryable,
  held: Array<{ id: string; token: number }>,
  leaseMs: number,
): Promise<Set<string>> {
  if (held.length === 0) return new Set();
  const { rows } = await q.query<{ id: string }>(
    `UPDATE jobs SET lease_expires_at = now() + $2::int * interval '1 millisecond'
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, token int)
      WHERE jobs.id = x.id AND jobs.lease_token = x.token AND jobs.state = 'running'
      RETURNING jobs.id`,
    [JSON.stringify(held), leaseMs],
  );
  return new Set(rows.map((r) => r.id));
}

/** Of these running jobs, the ones whose task was canceled (so their provider calls can be stopped). */
export async function runningJobsOfCanceledTasks(q: Queryable, jobIds: string[]): Promise<Set<string>> {
  if (jobIds.length === 0) return new Set();
  const { rows } = await q.query<{ id: string }>(
    `SELECT j.id FROM jobs j JOIN tasks t ON t.id = j.task_id
      WHERE j.id = ANY($1::text[]) AND j.state = 'running' AND t.cancel_requested`,
    [jobIds],
  );
  return new Set(rows.map((r) => r.id));
}

/** Locks a running job for its outcome; undefined when the lease was lost (a stale attempt). */
export async function lockRunningJob(tx: Queryable, id: string, token: number): Promise<JobRow | undefined> {
  const { rows } = await tx.query<JobRow>(
    `SELECT * FROM jobs WHERE id = $1 AND lease_token = $2 AND state = 'running' FOR UPDATE`,
    [id, token],
  );
  return rows[0];
}

/**
 * Every statement that ends a job's attempt frees capacity, so it wakes the scheduler itself
 * (`RETURNING pg_notify`): no extra round trip, delivered at commit, and PostgreSQL folds
 * identical notifications of one transaction into one.
 */
const WAKE_SCHEDULER = `pg_notify('darkroom_schedule', '')`;

/** Wakes the scheduler at commit (a task ended: its running-task slot is free). */
export async function wakeScheduler(tx: Queryable): Promise<void> {
  await tx.query(`SELECT ${WAKE_SCHEDULER}`);
}

/** Drops the key reservations of a task's jobs that were admitted but never started (a cancel). */
export async function dropUnstartedKeyRequests(tx: Queryable, taskId: string): Promise<void> {
  await tx.query(
    'DELETE FROM key_requests WHERE started_at IS NULL AND job_id IN (SELECT id FROM jobs WHERE task_id = $1)',
    [taskId],
  );
}

/**
 * Ends a job's attempt as succeeded; returns how many other jobs of its task are still queued,
 * admitted or running. The count is exact when the task row is locked (every transition that
 * ends a job holds it) and was locked by an earlier statement: this statement's snapshot then
 * sees every outcome that committed before.
 */
export async function completeJob(tx: Queryable, id: string, output: JobOutput): Promise<number> {
  const { rows } = await tx.query<{ active: number }>(
    `UPDATE jobs SET state = 'succeeded', output = $2::jsonb, finished_at = now(), lease_expires_at = NULL, error = NULL
      WHERE id = $1
      RETURNING ${WAKE_SCHEDULER},
                (SELECT count(*)::int FROM jobs o
                  WHERE o.task_id = jobs.task_id AND o.id <> jobs.id AND o.state IN ('queued', 'admitted', 'running')) AS active`,
    [id, JSON.stringify(output)],
  );
  return rows[0]!.active;
}

export async function failJob(tx: Queryable, id: string, error: string): Promise<void> {
  await tx.query(
    `UPDATE jobs SET state = 'failed', error = $2, finished_at = now(), lease_expires_at = NULL
      WHERE id = $1 RETURNING ${WAKE_SCHEDULER}`,
    [id, error],
  );
}

/** Counts a rate-limited outcome of a job: how many so far, and ms since the first. */
export async function noteRateLimited(
  tx: Queryable,
  id: string,
): Promise<{ count: number; sinceFirstMs: number }> {
  const { rows } = await tx.query<{ count: number; since_ms: number }>(
    `UPDATE jobs SET rate_limited = rate_limited + 1, first_rate_limited_at = COALESCE(first_rate_limited_at, now())
      WHERE id = $1
      RETURNING rate_limited AS count, (extract(epoch FROM now() - first_rate_limited_at) * 1000)::float8 AS since_ms`,
    [id],
  );
  return { count: rows[0]?.count ?? 1, sinceFirstMs: rows[0]?.since_ms ?? 0 };
}

/** Shrinks a call job to the images still owed after a partial success: the first `done` are delivered. */
export async function shrinkJob(tx: Queryable, id: string, done: number): Promise<void> {
  await tx.query('UPDATE jobs SET first_index = first_index + $2, count = count - $2 WHERE id = $1', [
    id,
    done,
  ]);
}

/**
 * A store job that stored some of its images shrinks to the ones still owed: their staged keys
 * and indices (not necessarily consecutive); `first_index` stays (the job's place in its task).
 */
export async function narrowStoreJob(
  tx: Queryable,
  id: string,
  owed: Array<{ index: number; key: string }>,
  cached: boolean,
): Promise<void> {
  const input: JobInput = { keys: owed.map((o) => o.key), indices: owed.map((o) => o.index) };
  if (cached) input.cached = true;
  await tx.query('UPDATE jobs SET count = $2, input = $3::jsonb WHERE id = $1', [
    id,
    owed.length,
    JSON.stringify(input),
  ]);
}

/** The image index of each staged key of a store job, in order. */
export function storeJobIndices(job: Pick<JobRow, 'first_index' | 'input'>): number[] {
  const keys = job.input.keys ?? [];
  return keys.map((_, i) => job.input.indices?.[i] ?? job.first_index + i);
}

/** Back to the queue: a retry after `delayMs`, or (rate limited / released) without spending the attempt. */
export async function requeueJob(
  tx: Queryable,
  id: string,
  delayMs: number,
  refundAttempt: boolean,
  error: string | null,
): Promise<void> {
  await tx.query(
    `UPDATE jobs SET state = 'queued', key_id = NULL, worker_id = NULL, lease_expires_at = NULL, admitted_at = NULL,
                     run_after = now() + $2::int * interval '1 millisecond',
                     attempts = CASE WHEN $3 THEN GREATEST(0, attempts - 1) ELSE attempts END,
                     error = COALESCE($4, error)
      WHERE id = $1 RETURNING ${WAKE_SCHEDULER}`,
    [id, Math.max(0, Math.round(delayMs)), refundAttempt, error],
  );
}

/**
 * Stores a provider-side handle for the attempt holding `token`, only while that attempt still
 * runs: after its outcome is recorded (or the lease was taken over) the token alone does not
 * fence it. False when nothing was written: the attempt is stale and must not start provider work.
 */
export async function saveRemoteRef(q: Queryable, id: string, token: number, ref: string): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE jobs SET remote_ref = $3 WHERE id = $1 AND lease_token = $2 AND state = 'running'`,
    [id, token, ref],
  );
  return rowCount > 0;
}

/** Cancels a task's jobs that have not started; returns how many. */
export async function cancelPendingJobs(tx: Queryable, taskId: string): Promise<number> {
  const { rowCount } = await tx.query(
    `UPDATE jobs SET state = 'canceled', finished_at = now() WHERE task_id = $1 AND state IN ('queued', 'admitted')
     RETURNING ${WAKE_SCHEDULER}`,
    [taskId],
  );
  return rowCount;
}

export async function countActiveJobs(tx: Queryable, taskId: string): Promise<number> {
  const { rows } = await tx.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM jobs WHERE task_id = $1 AND state IN ('queued', 'admitted', 'running')`,
    [taskId],
  );
  return rows[0]?.n ?? 0;
}

export async function countUnfinishedInStep(
  tx: Queryable,
  taskId: string,
  stepIndex: number,
): Promise<number> {
  const { rows } = await tx.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM jobs WHERE task_id = $1 AND step_index = $2 AND state NOT IN ('succeeded', 'failed', 'canceled')`,
    [taskId, stepIndex],
  );
  return rows[0]?.n ?? 0;
}

export async function stepOutputs(tx: Queryable, taskId: string, stepIndex: number): Promise<string[]> {
  const { rows } = await tx.query<{ output: JobOutput | null }>(
    `SELECT output FROM jobs WHERE task_id = $1 AND step_index = $2 AND state = 'succeeded' ORDER BY first_index`,
    [taskId, stepIndex],
  );
  return rows.flatMap((r) => r.output?.keys ?? []);
}

export async function jobsOfTask(q: Queryable, taskId: string): Promise<JobRow[]> {
  const { rows } = await q.query<JobRow>(
    'SELECT * FROM jobs WHERE task_id = $1 ORDER BY step_index, first_index',
    [taskId],
  );
  return rows;
}

/**
 * Locks up to `limit` running jobs whose lease ran out (their worker died or lost the
 * database). The expiry is checked again under the row lock (a heartbeat that renewed the
 * lease meanwhile wins); rows another transaction holds are skipped for the next round.
 */
export async function lockExpiredLeases(tx: Queryable, limit: number): Promise<JobRow[]> {
  const { rows } = await tx.query<JobRow>(
    `SELECT * FROM jobs WHERE state = 'running' AND lease_expires_at < now()
      ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`,
    [limit],
  );
  return rows;
}

/** Puts locked jobs back in the queue in one statement, each after its own delay (attempt spent). */
export async function requeueJobs(
  tx: Queryable,
  jobs: Array<{ id: string; delayMs: number }>,
  error: string,
): Promise<void> {
  if (jobs.length === 0) return;
  await tx.query(
    `UPDATE jobs SET state = 'queued', key_id = NULL, worker_id = NULL, lease_expires_at = NULL, admitted_at = NULL,
                     run_after = now() + x.delay_ms * interval '1 millisecond', error = $2
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, delay_ms int)
      WHERE jobs.id = x.id RETURNING ${WAKE_SCHEDULER}`,
    [JSON.stringify(jobs.map((j) => ({ id: j.id, delay_ms: Math.max(0, Math.round(j.delayMs)) }))), error],
  );
}

/** Admitted jobs nobody claimed in time go back to the queue (their key reservation is dropped). */
export async function requeueStaleAdmissions(tx: Queryable, olderThanMs: number): Promise<number> {
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE jobs SET state = 'queued', key_id = NULL, admitted_at = NULL
      WHERE state = 'admitted' AND admitted_at < now() - $1::int * interval '1 millisecond'
      RETURNING id, ${WAKE_SCHEDULER}`,
    [olderThanMs],
  );
  if (rows.length > 0) {
    await tx.query('DELETE FROM key_requests WHERE started_at IS NULL AND job_id = ANY($1::text[])', [
      rows.map((r) => r.id),
    ]);
  }
  return rows.length;
}

/** Releases a running job without spending its attempt (graceful shutdown past the deadline). */
export async function releaseJob(tx: Queryable, id: string, token: number): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE jobs SET state = 'queued', key_id = NULL, worker_id = NULL, lease_expires_at = NULL, admitted_at = NULL,
                     attempts = GREATEST(0, attempts - 1), run_after = now()
      WHERE id = $1 AND lease_token = $2 AND state = 'running' RETURNING ${WAKE_SCHEDULER}`,
    [id, token],
  );
  return rowCount > 0;
}
