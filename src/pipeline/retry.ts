import type { Config } from '../config/load.ts';
import { AppError, coerceError } from '../errors.ts';
import { isRetryable, retryCharge } from '../policy/index.ts';
import type { Db } from '../store/db.ts';
import { appendEvent } from '../store/events.ts';
import { readSubmitBasis } from '../store/forecasts.ts';
import { imageIndices } from '../store/images.ts';
import { insertJobs, jobsOfTask, wakeScheduler } from '../store/jobs.ts';
import { chargeAttempt, enterQueue, replaceForecast } from '../store/retry-write.ts';
import { lockQueueDepth } from '../store/queue-depth.ts';
import { findActiveTaskForOrder, lockTask, reopenTask, type TaskRow } from '../store/tasks.ts';
import { submitEstimate } from './estimate.ts';
import { retryStart } from '../policy/lifecycle.ts';
import { callJobRows } from './plan-jobs.ts';
import { pipelineOf } from './transitions.ts';

export interface RetryResult {
  task: TaskRow;
  /** Images the new attempt runs, and what it was charged for them. */
  images: number;
  charged: number;
}

/**
 * Runs a failed or partial task's undelivered images again, as its next attempt, in ONE
 * transaction: the charge for those images only (the ledger row carries the attempt), the task
 * back to `queued` with the images it delivered still done, jobs for the owed work only
 * (src/policy/lifecycle.ts retryStart), a `retried` event, a fresh estimate and the queue counter. Any
 * refusal (not retryable, short balance, full queue) changes nothing. The NOTIFY that commits
 * with it wakes the scheduler.
 */
export async function retryTask(db: Db, config: Config, taskId: string, by: string): Promise<RetryResult> {
  return db.transaction(async (tx) => {
    const task = await lockTask(tx, taskId);
    if (!task) throw new AppError('task_not_found', `task "${taskId}" does not exist`);
    if (!isRetryable(task.state)) {
      throw new AppError(
        'task_not_retryable',
        `task "${task.id}" is ${task.state}: only a failed or partial task can be retried`,
      );
    }
    if (!Object.hasOwn(config.pipelines, task.type)) {
      throw new AppError('task_not_retryable', `task type "${task.type}" is no longer configured`);
    }
    if (task.order_id !== null) {
      const active = await findActiveTaskForOrder(tx, task.user_id, task.order_id);
      if (active) {
        throw new AppError(
          'task_not_retryable',
          `order "${task.order_id}" already has an active task (${active.id})`,
        );
      }
    }
    const pipeline = pipelineOf(config, task);
    const delivered = await imageIndices(tx, task.id);
    const owed = task.images_total - delivered.length;
    const plan = retryStart(
      pipeline,
      task.images_total,
      await jobsOfTask(tx, task.id),
      delivered,
      task.inputs.map((i) => i.storage_key),
      config.worker.maxAttempts,
    );
    const attempt = task.attempt + 1;
    const charge = retryCharge(
      {
        images: task.attempt_images ?? task.images_total,
        credits: task.attempt_credits ?? task.credits_charged,
      },
      owed,
    );
    // The queue counter before the charge locks the user's row (the lock order of migration 0022).
    await lockQueueDepth(tx);
    if (charge > 0 && !(await chargeAttempt(tx, task.user_id, task.id, charge, attempt))) {
      throw new AppError(
        'insufficient_credits',
        `retrying ${owed} image(s) of task "${task.id}" costs ${charge} credits; the balance is not enough`,
      );
    }
    let reopened: TaskRow | undefined;
    try {
      reopened = await reopenTask(tx, task.id, { stage: plan.step.name, images: owed, credits: charge });
    } catch (error) {
      // A submit for the same order committed between the check above and this update.
      if (coerceError(error).code === '23505')
        throw new AppError('task_not_retryable', `order "${task.order_id}" already has an active task`);
      throw error;
    }
    if (!reopened) throw new AppError('internal', `task "${task.id}" changed under its lock`);
    await insertJobs(
      tx,
      callJobRows(
        { id: task.id, userId: task.user_id, imagesTotal: task.images_total },
        plan.step,
        plan.jobs,
        plan.inputKeys,
      ),
    );
    await appendEvent(tx, task.id, task.user_id, 'retried', {
      state: 'queued',
      attempt,
      images: owed,
      credits_charged: charge,
      stage: plan.step.name,
      previous_state: task.state,
      previous_error: task.error,
      by,
    });
    await wakeScheduler(tx);
    const basis = await readSubmitBasis(tx);
    const estimate = submitEstimate(
      config,
      { id: task.id, userId: task.user_id, type: task.type, plan: task.plan, images: owed },
      basis,
    );
    await replaceForecast(tx, task.id, estimate);
    // The bound, on the counter this transaction holds since the charge.
    if ((await enterQueue(tx, config.limits.maxQueuedTasks)) === undefined) {
      throw new AppError(
        'queue_full',
        `the queue holds ${config.limits.maxQueuedTasks} tasks, its limit; try again later`,
        { retryAfterSeconds: 30 },
      );
    }
    return { task: reopened, images: owed, charged: charge };
  });
}
