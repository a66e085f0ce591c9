import type { Config, ResolvedPipeline } from '../config/load.ts';
import { aimdOnRateLimit, aimdOnSuccess, decideRetry, finalStateFor, refundFor } from '../policy/index.ts';
import type { OutcomeKind } from '../policy/index.ts';
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
  requeueJob,
  stepOutputs,
  type JobRow,
} from '../store/jobs.ts';
import { recordProviderRateLimit, recordProviderSuccess } from '../store/provider-state.ts';
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
function isSettled(task: TaskRow): boolean {
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
}

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
  if (failure.kind === 'rate_limited' && provider && row.key_id) {
    await recordProviderRateLimit(
      tx,
      row.resource,
      row.key_id,
      failure.retryAfterMs ?? provider.defaultRetryAfterMs,
      (s) =>
        aimdOnRateLimit(s, {
          cap: provider.concurrency,
          increaseAfter: config.scheduler.aimdIncreaseAfter,
          decreaseFactor: config.scheduler.aimdDecreaseFactor,
        }),
      provider.concurrency,
    );
  }
  const decision = decideRetry(failure.kind, row.attempts, row.max_attempts, {
    baseMs: config.worker.backoffBaseMs,
    maxMs: config.worker.backoffMaxMs,
    random,
    retryAfterMs: failure.kind === 'rate_limited' ? undefined : failure.retryAfterMs,
  });
  if (decision.action === 'retry' && task && !isSettled(task)) {
    await requeueJob(
      tx,
      row.id,
      decision.delayMs,
      !decision.spendsAttempt,
      `${failure.kind}: ${failure.message}`,
    );
    await tx.query(`SELECT pg_notify('darkroom_schedule', '')`);
    return { recorded: true, retried: true };
  }
  await failJob(tx, row.id, `${failure.kind}: ${failure.message}`);
  await failUnitsOf(tx, row, `${row.step_name} failed: ${failure.message}`);
  await finishIfDone(tx, row.task_id);
  return { recorded: true, retried: false };
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
