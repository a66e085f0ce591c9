import { keyIsUsable, type Config, type ResolvedPipeline } from '../config/load.ts';
import { aimdOnRateLimit, aimdOnSuccess } from '../policy/index.ts';
import type { OutcomeKind, RateLimitHistory } from '../policy/index.ts';
import {
  afterCallSuccess,
  afterFailure,
  afterPartialSuccess,
  isSettled as settled,
  missingImages,
  taskEnd,
  type JobFacts,
  type NextJobs,
  type TaskCounts,
} from '../policy/lifecycle.ts';
import { refundTask } from '../store/credits.ts';
import type { Queryable } from '../store/db.ts';
import {
  completeJobWithNext,
  insertNextJobs,
  lockRunningJobWithTask,
  recordStoredImages,
  type StageChange,
} from '../store/attempts.ts';
import { appendEvent } from '../store/events.ts';
import { lockQueueDepth } from '../store/queue-depth.ts';
import { imageIndices, type ImageRow } from '../store/images.ts';
import {
  cancelPendingJobs,
  completeJob,
  countActiveJobs,
  countUnfinishedInStep,
  dropUnstartedKeyRequests,
  failJob,
  lockRunningJob,
  narrowStoreJob,
  noteRateLimited,
  requeueJob,
  shrinkJob,
  stepOutputs,
  type JobRow,
  type NewJob,
} from '../store/jobs.ts';
import {
  keysWaitMs,
  recordProviderRateLimit,
  recordProviderSuccess,
  unhintedStreak,
} from '../store/provider-state.ts';
import { unhintedRestMs } from '../policy/rests.ts';
import {
  addUnits,
  finishTask,
  lockTask,
  requestCancel,
  setTaskErrorOnce,
  type TaskRow,
} from '../store/tasks.ts';
import { callJobRows, storeJobRows } from './plan-jobs.ts';

/**
 * Lock order, everywhere: job row, then task row, then provider state; the queue counter before
 * any user's row (migration 0022 lists every path). (Inserting an image or a job takes a
 * key-share lock on its task through the foreign key, so the task must already be locked FOR
 * UPDATE by then, or two transactions deadlock on it.)
 *
 * Everything that happens to a task after a job's attempt, each in the caller's single
 * transaction: the job's outcome (fenced by its lease token), the task's counters, the next
 * stage's jobs, the final state and the refund. A stale attempt (its lease was taken over)
 * changes nothing and gets `false`.
 */

export type FailureKind = Exclude<OutcomeKind, 'success'>;

export function pipelineOf(config: Config, task: Pick<TaskRow, 'type'>): ResolvedPipeline {
  const pipeline = config.pipelines[task.type];
  if (!pipeline) throw new Error(`task type "${task.type}" is no longer configured`);
  return pipeline;
}

/** A task row's counters as the lifecycle (src/policy/lifecycle.ts) reads them. */
export function countsOf(
  task: Pick<TaskRow, 'cancel_requested' | 'images_done' | 'images_failed' | 'images_total'>,
): TaskCounts {
  return {
    imagesTotal: task.images_total,
    done: task.images_done,
    failed: task.images_failed,
    canceled: task.cancel_requested,
  };
}

/** Nothing more to start: canceled, or every image already accounted for. */
export function isSettled(
  task: Pick<TaskRow, 'cancel_requested' | 'images_done' | 'images_failed' | 'images_total'>,
): boolean {
  return settled(countsOf(task));
}

/** A provider call (transform or generate batch) succeeded and its outputs are staged. */
export async function recordCallSuccess(
  tx: Queryable,
  config: Config,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  stagedKeys: string[],
  options: { cached?: boolean } = {},
): Promise<boolean> {
  const locked = await lockRunningJobWithTask(tx, job.id, job.lease_token);
  if (!locked) return false;
  const row = locked.job;
  let task = locked.task;
  const pipeline = pipelineOf(config, task);
  const step = pipeline.steps[row.step_index]!;
  const provider = config.providers[row.resource];
  if (provider && !options.cached) {
    await recordProviderSuccess(
      tx,
      row.resource,
      (s) =>
        aimdOnSuccess(s, {
          cap: provider.concurrency,
          increaseAfter: config.scheduler.aimdIncreaseAfter,
          decreaseFactor: config.scheduler.aimdDecreaseFactor,
        }),
      provider.concurrency,
      row.key_id,
      locked.provider,
    );
  }
  // A generate call's success is one statement: the lifecycle's next jobs need nothing the
  // job's end changes. A transform's next step reads the step's outputs, this job's included,
  // so its job ends first.
  const transform = step.kind === 'transform';
  const output = { keys: stagedKeys };
  const endedActive = transform ? await completeJob(tx, row.id, output) : undefined;
  const unfinished = transform && !isSettled(task) ? await countUnfinishedInStep(tx, task.id, step.index) : 0;
  // A retried task that delivered images before owes only the others.
  const owed =
    transform && unfinished === 0 && task.images_done > 0
      ? missingImages(task.images_total, await imageIndices(tx, task.id))
      : undefined;
  const outcome = afterCallSuccess(
    pipeline,
    countsOf(task),
    { stepIndex: row.step_index, firstIndex: row.first_index, count: row.count },
    stagedKeys.length,
    unfinished,
    config.worker.maxAttempts,
    owed,
  );
  if (outcome.failedUnits > 0) task = await addUnits(tx, task.id, 0, outcome.failedUnits);
  const next = outcome.next
    ? await nextJobs(tx, pipeline, task, outcome.next, stagedKeys, options.cached ?? false)
    : undefined;
  const active =
    endedActive === undefined
      ? await completeJobWithNext(tx, row.id, output, next?.jobs ?? [], next?.stage)
      : endedActive + (next ? await insertNextJobs(tx, next.jobs, next.stage) : 0);
  await settleTask(tx, task, active);
  return true;
}

/** The next step's jobs the lifecycle asked for, and the task's move to that stage (if it moves). */
async function nextJobs(
  tx: Queryable,
  pipeline: ResolvedPipeline,
  task: TaskRow,
  next: NextJobs,
  stagedKeys: string[],
  cached: boolean,
): Promise<{ jobs: NewJob[]; stage: StageChange | undefined }> {
  const ref = { id: task.id, userId: task.user_id, imagesTotal: task.images_total };
  const jobs =
    next.step.kind === 'store'
      ? storeJobRows(ref, pipeline, next.step, next.jobs, stagedKeys, cached)
      : callJobRows(
          ref,
          next.step,
          next.jobs,
          next.inputsFromStep === undefined ? [] : await stepOutputs(tx, task.id, next.inputsFromStep),
        );
  const stage =
    task.stage === next.step.name
      ? undefined
      : { taskId: task.id, userId: task.user_id, name: next.step.name };
  return { jobs, stage };
}

/**
 * What one attempt of a store job did with its images. `stored`: written (original and
 * thumbnail); `rejected`: not an image (they fail for good, the others are still delivered);
 * `owed`: failed on a transient fault, to store again (with their staged keys).
 */
export interface StoreResults {
  stored: ImageRow[];
  rejected: Array<{ index: number; message: string }>;
  owed?: { images: Array<{ index: number; key: string }>; failure: FailureInfo } | undefined;
}

/**
 * A store job's attempt, in one transaction whatever its size: its image rows in one statement,
 * one counter update and one progress event for the task (a duplicate index, stored by an
 * earlier attempt, changes no counter). Images still owed shrink the job to them (their keys
 * and indices) and that remainder retries or fails as any failed attempt (recordJobFailure):
 * a retry never stores an image twice and never counts one twice.
 */
export async function recordStoreOutcome(
  tx: Queryable,
  config: Config,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  results: StoreResults,
  random: number,
): Promise<{ recorded: boolean; retried: boolean }> {
  const locked = await lockRunningJobWithTask(tx, job.id, job.lease_token);
  if (!locked) return { recorded: false, retried: false };
  const row = locked.job;
  const rejected = results.rejected.length;
  const owed = results.owed && results.owed.images.length > 0 ? results.owed : undefined;
  const written = await recordStoredImages(tx, {
    taskId: row.task_id,
    jobId: row.id,
    images: results.stored,
    rejected,
    error: rejected > 0 ? `${row.step_name} failed: permanent: ${results.rejected[0]!.message}` : null,
    complete: owed ? undefined : { keys: results.stored.flatMap((i) => [i.storage_key, i.thumb_key]) },
  });
  if (owed) {
    if (results.stored.length + rejected > 0)
      await narrowStoreJob(tx, row.id, owed.images, row.input.cached === true);
    return recordJobFailure(tx, config, job, owed.failure, random);
  }
  await settleTask(tx, written.task ?? locked.task, written.active!);
  return { recorded: true, retried: false };
}

/** Every image of a store job was stored (a duplicate index changes no counter). */
export async function recordStoreSuccess(
  tx: Queryable,
  config: Config,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  images: ImageRow[],
): Promise<boolean> {
  const r = await recordStoreOutcome(tx, config, job, { stored: images, rejected: [] }, 0);
  return r.recorded;
}

export interface FailureInfo {
  kind: FailureKind;
  message: string;
  retryAfterMs?: number | undefined;
  /** Rate limits: why the key rests longer than a short cool-down (a per-day quota). */
  rest?: string | undefined;
}

/** The stable code a job's error starts with when the rate-limit bound gave up on it (docs/errors.md). */
export const RATE_LIMIT_GIVE_UP = 'provider_rate_limited';

/**
 * A failed attempt: retried (with backoff; a 429 without spending an attempt and with the key
 * cooled down), or failed for good, failing the images it stood for.
 */
export async function recordJobFailure(
  tx: Queryable,
  config: Config,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  failure: FailureInfo,
  random: number,
): Promise<{ recorded: boolean; retried: boolean }> {
  const locked = await lockRunningJobWithTask(tx, job.id, job.lease_token);
  if (!locked) return { recorded: false, retried: false };
  const { job: row, task } = locked;
  const provider = config.providers[row.resource];
  let rateLimits: RateLimitHistory | undefined;
  if (failure.kind === 'rate_limited') {
    if (provider && row.key_id) {
      const unhinted = failure.retryAfterMs === undefined;
      const streak = unhinted ? await unhintedStreak(tx, row.resource, row.key_id) : 0;
      const restMs = failure.retryAfterMs ?? unhintedRestMs(streak, provider.defaultRetryAfterMs);
      await recordProviderRateLimit(
        tx,
        row.resource,
        row.key_id,
        restMs,
        (s, nowMs) =>
          aimdOnRateLimit(
            s,
            {
              cap: provider.concurrency,
              increaseAfter: config.scheduler.aimdIncreaseAfter,
              decreaseFactor: config.scheduler.aimdDecreaseFactor,
            },
            { nowMs, untilMs: nowMs + restMs },
          ),
        provider.concurrency,
        failure.rest ??
          (unhinted
            ? `${streak + 1} rate limit(s) in a row without a retry hint: resting ${restMs} ms`
            : undefined),
        unhinted,
      );
    }
    rateLimits = await rateLimitHistory(tx, config, row);
  }
  const outcome = afterFailure(countsOf(task), jobFacts(row), failure.kind, {
    backoffBaseMs: config.worker.backoffBaseMs,
    backoffMaxMs: config.worker.backoffMaxMs,
    random,
    retryAfterMs: failure.retryAfterMs,
    rateLimits,
  });
  if (outcome.action === 'retry') {
    await requeueJob(
      tx,
      row.id,
      outcome.delayMs,
      !outcome.spendsAttempt,
      `${failure.kind}: ${failure.message}`,
    );
    return { recorded: true, retried: true };
  }
  const message =
    outcome.reason === 'rate_limit_bound'
      ? `${RATE_LIMIT_GIVE_UP}: gave up after ${rateLimits?.count ?? 0} rate-limited attempts over ${Math.round((rateLimits?.sinceFirstMs ?? 0) / 1000)} s on provider "${row.resource}" (bounds: worker.maxRateLimitedRetries ${config.worker.maxRateLimitedRetries}, worker.maxRateLimitedWaitMs ${config.worker.maxRateLimitedWaitMs}); last: ${failure.message}`
      : `${failure.kind}: ${failure.message}`;
  await failJob(tx, row.id, message);
  await failUnits(tx, row, outcome.failsTask, `${row.step_name} failed: ${message}`);
  await finishIfDone(tx, row.task_id);
  return { recorded: true, retried: false };
}

export function jobFacts(row: JobRow): JobFacts {
  return {
    kind: row.kind,
    firstIndex: row.first_index,
    count: row.count,
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
  };
}

/**
 * The job's rate-limit history for the bound. When every usable key of the provider rests longer
 * than the job may still wait (a daily quota on each), waiting is pointless: the history says the
 * wait is already spent, so the job fails now instead of sitting in the queue until the reset.
 */
async function rateLimitHistory(tx: Queryable, config: Config, row: JobRow): Promise<RateLimitHistory> {
  const noted = await noteRateLimited(tx, row.id);
  const bounds = {
    maxRetries: config.worker.maxRateLimitedRetries,
    maxWaitMs: config.worker.maxRateLimitedWaitMs,
  };
  const provider = config.providers[row.resource];
  if (!provider) return { ...noted, ...bounds };
  const usable = provider.keys.filter((k) => keyIsUsable(provider, k)).map((k) => k.id);
  const waitMs = await keysWaitMs(tx, provider.name, usable);
  if (waitMs !== undefined && noted.sinceFirstMs + waitMs > bounds.maxWaitMs)
    return { ...noted, sinceFirstMs: noted.sinceFirstMs + waitMs, ...bounds };
  return { ...noted, ...bounds };
}

/**
 * A call that returned only some of its images (a batch split into several requests, some of
 * which failed): the images that came back are kept and stored, the job shrinks to the images
 * still owed, and that remainder is treated as the failure says (retried, or failed and refunded).
 */
export async function recordPartialSuccess(
  tx: Queryable,
  config: Config,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  stagedKeys: string[],
  failure: FailureInfo,
  random: number,
): Promise<{ recorded: boolean; retried: boolean }> {
  const row = await lockRunningJob(tx, job.id, job.lease_token);
  if (!row) return { recorded: false, retried: false };
  const task = (await lockTask(tx, row.task_id))!;
  const pipeline = pipelineOf(config, task);
  const { next } = afterPartialSuccess(
    pipeline,
    countsOf(task),
    { firstIndex: row.first_index, count: row.count },
    stagedKeys.length,
    config.worker.maxAttempts,
  );
  if (next) {
    const created = await nextJobs(tx, pipeline, task, next, stagedKeys, false);
    await insertNextJobs(tx, created.jobs, created.stage);
  }
  await shrinkJob(tx, row.id, stagedKeys.length);
  return recordJobFailure(tx, config, job, failure, random);
}

/**
 * Marks the images a finally-failed job stood for as failed; `failsTask` (a transform step
 * failed, per the lifecycle): the task's unstarted jobs are canceled and all its images fail.
 */
export async function failUnits(
  tx: Queryable,
  row: JobRow,
  failsTask: boolean,
  error: string,
): Promise<void> {
  if (failsTask) {
    const task = (await lockTask(tx, row.task_id))!;
    await cancelPendingJobs(tx, task.id);
    await addUnits(tx, task.id, 0, task.images_total);
  } else {
    await addUnits(tx, row.task_id, 0, row.count);
  }
  await setTaskErrorOnce(tx, row.task_id, error);
}

/**
 * Ends the task once none of its jobs is queued, admitted or running: every image not
 * delivered counts as failed (or canceled), the final state is set and the undelivered
 * share of this attempt's charge refunded, all in this transaction. The ledger allows one
 * refund per task and attempt.
 */
export async function finishIfDone(tx: Queryable, taskId: string): Promise<TaskRow | undefined> {
  const task = await lockTask(tx, taskId);
  if (!task || (task.state !== 'queued' && task.state !== 'running')) return undefined;
  return settleTask(tx, task, await countActiveJobs(tx, taskId));
}

/**
 * finishIfDone for a caller that holds the task's lock already: `task` is its row as this
 * transaction last wrote it and `active` how many of its jobs are queued, admitted or running.
 */
async function settleTask(tx: Queryable, task: TaskRow, active: number): Promise<TaskRow | undefined> {
  if (task.state !== 'queued' && task.state !== 'running') return undefined;
  const attempt =
    task.attempt_images !== null && task.attempt_credits !== null
      ? { images: task.attempt_images, credits: task.attempt_credits }
      : undefined;
  const end = taskEnd(
    { ...countsOf(task), open: true, creditsCharged: task.credits_charged, attempt },
    active,
  );
  if (!end) return undefined;
  // A queued task leaving the queue takes the counter (trigger tasks_leave_queue): before a
  // refund locks the user's row, the lock order of migration 0022.
  if (task.state === 'queued' && end.refund > 0) await lockQueueDepth(tx);
  const refunded = await refundTask(tx, task.user_id, task.id, end.refund, task.attempt);
  return finishTask(tx, task.id, end.state, end.failed, task.credits_refunded + refunded, null);
}

/** Cancels a task: its unstarted jobs stop now; running ones finish and the task ends `canceled`. */
export async function cancelTask(
  tx: Queryable,
  taskId: string,
  reason: string,
): Promise<TaskRow | undefined> {
  const task = await lockTask(tx, taskId);
  if (!task || (task.state !== 'queued' && task.state !== 'running')) return task;
  await requestCancel(tx, taskId, reason);
  await cancelPendingJobs(tx, taskId);
  await dropUnstartedKeyRequests(tx, taskId);
  await appendEvent(tx, task.id, task.user_id, 'cancel_requested', { reason });
  return (await finishIfDone(tx, taskId)) ?? (await lockTask(tx, taskId));
}
