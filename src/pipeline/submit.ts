import { createHash, randomInt } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import {
  findIdempotentResponse,
  saveIdempotentResponse,
  tryLockIdempotencyKey,
} from '../store/idempotency.ts';
import { readSubmitBasis } from '../store/forecasts.ts';
import { chargeSubmittedTask, ensureUserWithGrant, insertQueuedTask } from '../store/submit-write.ts';
import { findActiveTaskForOrder, getTaskView, type TaskInputRef, type TaskRow } from '../store/tasks.ts';
import type { Db, Queryable } from '../store/db.ts';
import { estimateOf, submitEstimate, type TaskEstimate } from './estimate.ts';
import { jobsForCallStep } from './plan-jobs.ts';
import { enforceSubmitLimits } from './submit-limits.ts';

export interface SubmitRequest {
  userId: string;
  orderId: string | undefined;
  type: string;
  plan: string;
  prompt: string;
  /** Inputs already validated and stored (uploads or fetched URLs), in role order. */
  inputs: TaskInputRef[];
  params: Record<string, unknown>;
  deadlineSeconds: number | undefined;
  idempotencyKey: string | undefined;
  /** Hash of the request body, to tell a replay from a different request under the same key. */
  requestHash: string;
  /** False for a user token: a user darkroom has not seen gets no initial grant from it. */
  mayCreateUser?: boolean;
  /** POST the task to this URL when it ends (and, with `stages`, when it starts and at each stage). */
  webhook?: { url: string; stages: boolean } | undefined;
  /** The API key submitting (or that issued the user token), for its rate limit. */
  keyId?: string | null;
  /** The clock of the rate windows (default: now). */
  now?: Date;
}

export interface SubmitResponseBody extends TaskEstimate {
  id: string;
  state: TaskRow['state'];
  images_total: number;
  credits_charged: number;
  created_at: string;
  deduplicated?: true;
}

export interface SubmitResult {
  status: 200 | 202;
  body: SubmitResponseBody;
}

export function hashRequest(body: unknown): string {
  return createHash('sha256')
    .update(JSON.stringify(body ?? null))
    .digest('hex');
}

/**
 * The stored answer for a repeated Idempotency-Key (422 when the body differs), or undefined
 * when the key is new. Read outside any transaction: submitTask checks again under its lock.
 */
export async function replayIdempotent(
  q: Queryable,
  key: string,
  requestHash: string,
): Promise<SubmitResult | undefined> {
  const previous = await findIdempotentResponse(q, key);
  if (!previous) return undefined;
  if (previous.request_hash !== requestHash) {
    throw new AppError(
      'idempotency_key_reused',
      'this Idempotency-Key was used with a different request body',
    );
  }
  return { status: previous.status_code as 200 | 202, body: previous.response as SubmitResponseBody };
}

/** Checks type and plan against the configuration (before any I/O); own keys only, so `toString` is no type. */
export function checkTaskShape(config: Config, type: string, plan: string): void {
  if (!Object.hasOwn(config.pipelines, type)) {
    throw new AppError(
      'unknown_type',
      `unknown task type "${type}"; configured: ${Object.keys(config.pipelines).join(', ')}`,
    );
  }
  if (!Object.hasOwn(config.plans, plan))
    throw new AppError(
      'unknown_plan',
      `unknown plan "${plan}"; configured: ${Object.keys(config.plans).join(', ')}`,
    );
}

function responseFor(task: TaskRow, estimate: TaskEstimate, deduplicated: boolean): SubmitResponseBody {
  return {
    id: task.id,
    state: task.state,
    ...estimate,
    images_total: task.images_total,
    credits_charged: task.credits_charged,
    created_at: task.created_at.toISOString(),
    ...(deduplicated ? { deduplicated: true as const } : {}),
  };
}

/** The answer for an order's task that already exists: its stored estimate, as a read gives it. */
async function existingResponse(q: Queryable, task: TaskRow): Promise<SubmitResponseBody> {
  const view = await getTaskView(q, task.id);
  if (!view) throw new AppError('internal', 'order deduplication lost its task; retry');
  return responseFor(task, estimateOf(view), true);
}

/**
 * Submits a task in ONE transaction: idempotency key, order dedup, task + first jobs + `queued`
 * event + its first estimate (one statement), credit charge, and last the submit limits and the
 * queue bound (one statement; src/store/submit-write.ts). Any failure rolls all of it back: nothing stored, nothing charged. The scheduler
 * is woken by the NOTIFY that commits with it. Every statement is O(1) in the size of the queue.
 */
export async function submitTask(db: Db, config: Config, req: SubmitRequest): Promise<SubmitResult> {
  checkTaskShape(config, req.type, req.plan);
  const plan = config.plans[req.plan]!;
  const pipeline = config.pipelines[req.type]!;
  return db.transaction(async (tx) => {
    if (req.idempotencyKey !== undefined) {
      if (!(await tryLockIdempotencyKey(tx, req.idempotencyKey))) {
        throw new AppError(
          'idempotency_key_in_flight',
          'a request with this Idempotency-Key is still being processed; retry shortly',
          {
            retryAfterSeconds: 1,
          },
        );
      }
      const replay = await replayIdempotent(tx, req.idempotencyKey, req.requestHash);
      if (replay) return replay;
    }
    const finish = async (result: SubmitResult): Promise<SubmitResult> => {
      if (req.idempotencyKey !== undefined) {
        await saveIdempotentResponse(tx, req.idempotencyKey, req.requestHash, result.status, result.body);
      }
      return result;
    };

    if (req.orderId !== undefined) {
      const existing = await findActiveTaskForOrder(tx, req.userId, req.orderId);
      if (existing) return finish({ status: 200, body: await existingResponse(tx, existing) });
    }
    const basis = await readSubmitBasis(tx);
    const first = pipeline.steps[0]!;
    const id = uuidv7();
    const estimate = submitEstimate(config, { type: req.type, plan: req.plan, images: plan.images }, basis);
    const task = await insertQueuedTask(tx, {
      task: {
        id,
        userId: req.userId,
        orderId: req.orderId ?? null,
        type: req.type,
        plan: req.plan,
        prompt: req.prompt,
        inputs: req.inputs,
        params: req.params,
        // An explicit integer seed makes runs (and the result cache) reproducible.
        seed: Number.isInteger(req.params.seed)
          ? Math.abs(req.params.seed as number) % 2 ** 31
          : randomInt(0, 2 ** 31 - 1),
        weight: plan.weight,
        imagesTotal: plan.images,
        creditsCharged: plan.credits,
        stage: first.name,
        deadlineSeconds: req.deadlineSeconds ?? plan.deadlineSeconds ?? null,
      },
      jobs: jobsForCallStep(
        { id, userId: req.userId, imagesTotal: plan.images },
        first,
        req.inputs.map((i) => i.storage_key),
        config.worker.maxAttempts,
      ),
      webhook: req.webhook,
      estimate,
    });
    if (!task) {
      // A concurrent submit for the same order committed first: answer with its task.
      const winner = await findActiveTaskForOrder(tx, req.userId, req.orderId!);
      if (!winner) throw new AppError('internal', 'order deduplication lost its task; retry');
      return finish({ status: 200, body: await existingResponse(tx, winner) });
    }
    if (req.mayCreateUser !== false) await ensureUserWithGrant(tx, req.userId, config.credits.initialGrant);
    if (!(await chargeSubmittedTask(tx, req.userId, id, plan.credits))) {
      throw new AppError(
        'insufficient_credits',
        `plan "${req.plan}" costs ${plan.credits} credits; the balance is not enough`,
      );
    }
    const result = await finish({
      status: 202,
      body: responseFor(
        task,
        {
          position: estimate.position,
          eta_seconds: Math.max(0, Math.round((estimate.finishAtMs - basis.nowMs) / 1000)),
          predicted_start_at: new Date(estimate.startAtMs).toISOString(),
          predicted_finish_at: new Date(estimate.finishAtMs).toISOString(),
          eta_basis: 'submit',
          forecast_at: new Date(basis.nowMs).toISOString(),
          forecast_stale: false,
        },
        false,
      ),
    });
    // Last, so that the counter rows (rate windows, the queue bound) stay locked only through the commit.
    await enforceSubmitLimits(tx, config, { userId: req.userId, keyId: req.keyId }, req.now ?? new Date());
    return result;
  });
}
