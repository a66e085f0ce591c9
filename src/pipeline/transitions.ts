import { keyIsUsable, type Config, type ResolvedPipeline } from '../config/load.ts';
import { aimdOnRateLimit, aimdOnSuccess, decideRetry, finalStateFor, refundFor } from '../policy/index.ts';
import type { OutcomeKind, RateLimitHistory } from '../policy/index.ts';
import { refundTask } from '../store/credits.ts';
import type { Queryable } from '../store/db.ts';
import { appendEvent } from '../store/events.ts';
import { insertImage, type ImageRow } from '../store/images.ts';
import {
  cancelPendingJobs,
  completeJob,
  countActiveJobs,
  countUnfinishedInStep,
  failJob,
  insertJobs,
  lockRunningJob,
  noteRateLimited,
  requeueJob,
  shrinkJob,
  stepOutputs,
  type JobRow,
} from '../store/jobs.ts';
import {
  keysFreeAt,
  recordProviderRateLimit,
  recordProviderSuccess,
  unhintedStreak,
} from '../store/provider-state.ts';
import { unhintedRestMs } from '../policy/rests.ts';
import { addUnits, finishTask, lockTask, setStage, type TaskRow } from '../store/tasks.ts';
import { jobsForCallStep, jobsForStoreStep } from './plan-jobs.ts';

/**
 * Lock order, everywhere: job row, then task row, then provider state. (Inserting an image or
 * a job takes a key-share lock on its task through the foreign key, so the task must already be
 * locked FOR UPDATE by then, or two transactions deadlock on it.)
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

/** Nothing more to start: canceled, or every image already accounted for. */
export function isSettled(
  task: Pick<TaskRow, 'cancel_requested' | 'images_done' | 'images_failed' | 'images_total'>,
): boolean {
  return task.cancel_requested || task.images_done + task.images_failed >= task.images_total;
}

/** A provider call (transform or generate batch) succeeded and its outputs are staged. */
export async function recordCallSuccess(
  tx: Queryable,
  config: Config,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  stagedKeys: string[],
  options: { cached?: boolean } = {},
): Promise<boolean> {
  const row = await lockRunningJob(tx, job.id, job.lease_token);
  if (!row) return false;
  let task = (await lockTask(tx, row.task_id))!;
  await completeJob(tx, row.id, { keys: stagedKeys });
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
    );
  }

  if (step.kind === 'generate') {
    const missing = row.count - stagedKeys.length;
    if (missing > 0) task = await addUnits(tx, task.id, 0, missing);
    const store = pipeline.steps.find((s) => s.kind === 'store');
    if (store && !isSettled(task) && stagedKeys.length > 0) {
      const jobs = jobsForStoreStep(
        { id: task.id, userId: task.user_id, imagesTotal: task.images_total },
        pipeline,
        store,
        row.first_index,
        stagedKeys,
        config.worker.maxAttempts,
        options.cached ?? false,
      );
      await insertJobs(tx, jobs);
      if (task.stage !== store.name) {
        await setStage(tx, task.id, store.name);
        await appendEvent(tx, task.id, task.user_id, 'stage', { stage: store.name });
      }
    }
  } else if (step.kind === 'transform' && !isSettled(task)) {
    if ((await countUnfinishedInStep(tx, task.id, step.index)) === 0) {
      const next = pipeline.steps[step.index + 1];
      if (next && next.kind !== 'store') {
        const inputs = await stepOutputs(tx, task.id, step.index);
        await insertJobs(
          tx,
          jobsForCallStep(
            { id: task.id, userId: task.user_id, imagesTotal: task.images_total },
            next,
            inputs,
            config.worker.maxAttempts,
          ),
        );
        await setStage(tx, task.id, next.name);
        await appendEvent(tx, task.id, task.user_id, 'stage', { stage: next.name });
      }
    }
  }
  await finishIfDone(tx, task.id);
  return true;
}

/** An image was stored (original + thumbnail). A duplicate index changes no counter. */
export async function recordStoreSuccess(
  tx: Queryable,
  job: Pick<JobRow, 'id' | 'lease_token'>,
  image: ImageRow,
): Promise<boolean> {
  const row = await lockRunningJob(tx, job.id, job.lease_token);
  if (!row) return false;
  await lockTask(tx, row.task_id);
  await completeJob(tx, row.id, { keys: [image.storage_key, image.thumb_key] });
  const inserted = await insertImage(tx, image);
  if (inserted) {
    const task = await addUnits(tx, row.task_id, 1, 0);
    await appendEvent(tx, task.id, task.user_id, 'progress', {
      done: task.images_done,
      failed: task.images_failed,
      total: task.images_total,
    });
  }
  await finishIfDone(tx, row.task_id);
  return true;
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
  const row = await lockRunningJob(tx, job.id, job.lease_token);
  if (!row) return { recorded: false, retried: false };
  const task = await lockTask(tx, row.task_id);
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
  const decision = decideRetry(
    failure.kind,
    row.attempts,
    row.max_attempts,
    {
      baseMs: config.worker.backoffBaseMs,
      maxMs: config.worker.backoffMaxMs,
      random,
      retryAfterMs: failure.kind === 'rate_limited' ? undefined : failure.retryAfterMs,
    },
    rateLimits,
  );
  if (decision.action === 'retry' && task && !isSettled(task)) {
    await requeueJob(
      tx,
      row.id,
      decision.delayMs,
      !decision.spendsAttempt,
      `${failure.kind}: ${failure.message}`,
    );
    return { recorded: true, retried: true };
  }
  const message =
    decision.action === 'fail' && decision.reason === 'rate_limit_bound'
      ? `${RATE_LIMIT_GIVE_UP}: gave up after ${rateLimits?.count ?? 0} rate-limited attempts over ${Math.round((rateLimits?.sinceFirstMs ?? 0) / 1000)} s on provider "${row.resource}" (bounds: worker.maxRateLimitedRetries ${config.worker.maxRateLimitedRetries}, worker.maxRateLimitedWaitMs ${config.worker.maxRateLimitedWaitMs}); last: ${failure.message}`
      : `${failure.kind}: ${failure.message}`;
  await failJob(tx, row.id, message);
  await failUnitsOf(tx, row, `${row.step_name} failed: ${message}`);
  await finishIfDone(tx, row.task_id);
  return { recorded: true, retried: false };
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
  const freeAt = await keysFreeAt(tx, provider.name, usable);
  if (freeAt) {
    const { rows } = await tx.query<{ wait_ms: number }>(
      `SELECT (extract(epoch FROM $1::timestamptz - now()) * 1000)::float8 AS wait_ms`,
      [freeAt],
    );
    const waitMs = rows[0]?.wait_ms ?? 0;
    if (noted.sinceFirstMs + waitMs > bounds.maxWaitMs)
      return { ...noted, sinceFirstMs: noted.sinceFirstMs + waitMs, ...bounds };
  }
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
  const store = pipeline.steps.find((s) => s.kind === 'store');
  if (store && !isSettled(task) && stagedKeys.length > 0) {
    await insertJobs(
      tx,
      jobsForStoreStep(
        { id: task.id, userId: task.user_id, imagesTotal: task.images_total },
        pipeline,
        store,
        row.first_index,
        stagedKeys,
        config.worker.maxAttempts,
      ),
    );
    if (task.stage !== store.name) {
      await setStage(tx, task.id, store.name);
      await appendEvent(tx, task.id, task.user_id, 'stage', { stage: store.name });
    }
  }
  await shrinkJob(tx, row.id, stagedKeys.length);
  return recordJobFailure(tx, config, job, failure, random);
}

/** Marks the images a finally-failed job stood for as failed. */
export async function failUnitsOf(tx: Queryable, row: JobRow, error: string): Promise<void> {
  if (row.kind === 'transform') {
    // Without this step's output nothing downstream can run: the whole task fails.
    const task = (await lockTask(tx, row.task_id))!;
    await cancelPendingJobs(tx, task.id);
    await addUnits(tx, task.id, 0, task.images_total);
    await tx.query('UPDATE tasks SET error = COALESCE(error, $2) WHERE id = $1', [task.id, error]);
  } else {
    const task = await addUnits(tx, row.task_id, 0, row.count);
    if (!task.error) await tx.query('UPDATE tasks SET error = $2 WHERE id = $1', [task.id, error]);
  }
}

/**
 * Ends the task once none of its jobs is queued, admitted or running: every image not
 * delivered counts as failed (or canceled), the final state is set and the undelivered
 * share refunded, all in this transaction. The ledger allows one refund per task.
 */
export async function finishIfDone(tx: Queryable, taskId: string): Promise<TaskRow | undefined> {
  const task = await lockTask(tx, taskId);
  if (!task || (task.state !== 'queued' && task.state !== 'running')) return undefined;
  if ((await countActiveJobs(tx, taskId)) > 0) return undefined;
  const state = finalStateFor(task.images_total, task.images_done, task.cancel_requested);
  const refund = refundFor(task.credits_charged, task.images_total, task.images_done);
  const refunded = await refundTask(tx, task.user_id, task.id, refund);
  const finished = await finishTask(
    tx,
    task.id,
    state,
    task.images_total - task.images_done,
    task.credits_refunded + refunded,
    null,
  );
  await appendEvent(tx, task.id, task.user_id, 'finished', {
    state,
    done: finished.images_done,
    failed: finished.images_failed,
    total: finished.images_total,
    credits_refunded: finished.credits_refunded,
  });
  await tx.query(`SELECT pg_notify('darkroom_schedule', '')`);
  return finished;
}

/** Cancels a task: its unstarted jobs stop now; running ones finish and the task ends `canceled`. */
export async function cancelTask(
  tx: Queryable,
  taskId: string,
  reason: string,
): Promise<TaskRow | undefined> {
  const task = await lockTask(tx, taskId);
  if (!task || (task.state !== 'queued' && task.state !== 'running')) return task;
  await tx.query(
    'UPDATE tasks SET cancel_requested = true, error = COALESCE(error, $2), updated_at = now() WHERE id = $1',
    [taskId, reason],
  );
  await cancelPendingJobs(tx, taskId);
  await tx.query(
    'DELETE FROM key_requests WHERE started_at IS NULL AND job_id IN (SELECT id FROM jobs WHERE task_id = $1)',
    [taskId],
  );
  await appendEvent(tx, task.id, task.user_id, 'cancel_requested', { reason });
  return (await finishIfDone(tx, taskId)) ?? (await lockTask(tx, taskId));
}
