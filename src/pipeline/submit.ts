import { createHash, randomInt } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { Config } from '../config/load.ts';
import { AppError, coerceError } from '../errors.ts';
import {
  findIdempotentResponse,
  saveIdempotentResponse,
  tryLockIdempotencyKey,
} from '../store/idempotency.ts';
import { readSubmitBasis } from '../store/forecasts.ts';
import {
  writeSubmits,
  type SubmittedTask,
  type SubmitWrite,
  type SubmitWriteResult,
} from '../store/submit-write.ts';
import { findActiveTaskForOrder, getTaskView, type TaskInputRef, type TaskRow } from '../store/tasks.ts';
import { RETRYABLE_SQLSTATES, sqlState, type Db, type Queryable } from '../store/db.ts';
import { estimateOf, submitEstimate, type TaskEstimate } from './estimate.ts';
import { naturalBatcher, type NaturalBatcher } from './natural-batch.ts';
import { jobsForCallStep } from './plan-jobs.ts';
import { refusal, submitLimits } from './submit-limits.ts';

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

function responseFor(task: SubmittedTask, estimate: TaskEstimate, deduplicated: boolean): SubmitResponseBody {
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
 * Submits a task. Without an Idempotency-Key it goes in the process's next batch of submits
 * (group commit, `batcherOf`): the batch's estimate basis, then everything its submits write in
 * one statement the server commits by itself (src/store/submit-write.ts), so the counter rows
 * all submits share are never held across a round trip and are locked once per batch. A lone
 * submit is two statements and no transaction. With a key, the same for this submit alone, in a
 * transaction that holds the key's lock and stores the answer. Any refusal (credits, limits,
 * queue bound) rolls back that submit's writes: nothing stored, nothing charged. The scheduler
 * is woken by the NOTIFY that commits with it. Every statement is O(1) in the size of the queue.
 */
export async function submitTask(
  db: Db,
  config: Config,
  req: SubmitRequest,
  /** Where a batch that failed and was sent again one by one is told. */
  log?: BatchLog,
): Promise<SubmitResult> {
  checkTaskShape(config, req.type, req.plan);
  const key = req.idempotencyKey;
  if (key === undefined) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await submitOnce(db, (s) => batcherOf(db).push({ ...s, log }), config, req);
      } catch (error) {
        // A deadlock or serialization failure rolled the statement back: nothing was written.
        if (attempt < 5 && RETRYABLE_SQLSTATES.has(sqlState(error) ?? '')) continue;
        throw error;
      }
    }
  }
  return db.transaction(async (tx) => {
    if (!(await tryLockIdempotencyKey(tx, key))) {
      throw new AppError(
        'idempotency_key_in_flight',
        'a request with this Idempotency-Key is still being processed; retry shortly',
        {
          retryAfterSeconds: 1,
        },
      );
    }
    const replay = await replayIdempotent(tx, key, req.requestHash);
    if (replay) return replay;
    const result = await submitOnce(tx, async (s) => (await writeBatch(tx, [s]))[0]!, config, req);
    await saveIdempotentResponse(tx, key, req.requestHash, result.status, result.body);
    return result;
  });
}

/** What the group commit logs to (a pino logger is one). */
export interface BatchLog {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** A submit ready to write but for its estimate, which its batch's basis read gives. */
interface PendingSubmit {
  config: Config;
  task: { id: string; userId: string; type: string; plan: string; images: number };
  write: Omit<SubmitWrite, 'estimate'>;
  log?: BatchLog | undefined;
}

interface Written {
  written: SubmitWriteResult;
  estimate: { startAtMs: number; finishAtMs: number };
  /** The database's clock when the basis was read. */
  nowMs: number;
}

/**
 * Submits in one batch: one basis read, then one statement writing them in order (each one
 * refused alone, src/store/submit-write.ts). O(1) statements in the batch's size.
 */
async function writeBatch(q: Queryable, items: readonly PendingSubmit[]): Promise<Written[]> {
  const basis = await readSubmitBasis(q);
  const estimates = items.map((s) => {
    const e = submitEstimate(s.config, s.task, basis);
    return { startAtMs: e.startAtMs, finishAtMs: e.finishAtMs };
  });
  const written = await writeSubmits(
    q,
    items.map((s, i) => ({ ...s.write, estimate: estimates[i]! })),
  );
  return written.map((w, i) => ({ written: w, estimate: estimates[i]!, nowMs: basis.nowMs }));
}

/**
 * At most this many submits a statement: each is a subtransaction with its own transaction id,
 * and past 64 in one transaction PostgreSQL's per-backend cache of them overflows, which slows
 * every snapshot on the server while the transaction is open.
 */
export const SUBMIT_BATCH_MAX = 32;

const batchers = new WeakMap<Db, NaturalBatcher<PendingSubmit, Written>>();

/**
 * The process's group commit of submits on `db`: the submits that arrive while a batch is in
 * flight are the next batch. One batch at a time, so batches never wait on each other's locks
 * of the rows every submit counts on (queue_depth, the key's rate window), nor deadlock over a
 * user in both. An unexpected error fails the batch, whose submits are then sent one by one:
 * a bad one fails alone. Told as a warning: nothing is lost, but a deadlock (40P01) means some
 * path broke the lock order of migration 0022, and any other error a submit the checks let by.
 */
function batcherOf(db: Db): NaturalBatcher<PendingSubmit, Written> {
  let batcher = batchers.get(db);
  if (!batcher) {
    batcher = naturalBatcher<PendingSubmit, Written>(
      async (items) => {
        try {
          return (await writeBatch(db, items)).map((value) => ({ ok: true, value }));
        } catch (error) {
          if (items.length === 1) return [{ ok: false, error }];
          const code = sqlState(error);
          items
            .find((i) => i.log)
            ?.log?.warn(
              { err: coerceError(error), sqlState: code, submits: items.length },
              RETRYABLE_SQLSTATES.has(code ?? '')
                ? 'a batch of submits was rolled back by a lock conflict; sent again one by one'
                : 'a batch of submits failed; sent again one by one',
            );
          return Promise.all(
            items.map((item) =>
              writeBatch(db, [item]).then(
                ([value]) => ({ ok: true as const, value: value! }),
                (e: unknown) => ({ ok: false as const, error: e }),
              ),
            ),
          );
        }
      },
      { maxItems: SUBMIT_BATCH_MAX, maxInFlight: 1 },
    );
    batchers.set(db, batcher);
  }
  return batcher;
}

async function submitOnce(
  q: Queryable,
  send: (s: PendingSubmit) => Promise<Written>,
  config: Config,
  req: SubmitRequest,
): Promise<SubmitResult> {
  const plan = config.plans[req.plan]!;
  const pipeline = config.pipelines[req.type]!;
  if (req.orderId !== undefined) {
    const existing = await findActiveTaskForOrder(q, req.userId, req.orderId);
    if (existing) return { status: 200, body: await existingResponse(q, existing) };
  }
  const first = pipeline.steps[0]!;
  const id = uuidv7();
  const now = req.now ?? new Date();
  const { written, estimate, nowMs } = await send({
    config,
    task: { id, userId: req.userId, type: req.type, plan: req.plan, images: plan.images },
    write: {
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
      // With auth on, only keys create users: a token's user was created when its token was issued.
      grant: req.mayCreateUser === false ? undefined : config.credits.initialGrant,
      ...submitLimits(config, { userId: req.userId, keyId: req.keyId }, now),
    },
  });
  switch (written.outcome) {
    case 'order_taken': {
      // A concurrent submit for the same order committed first: answer with its task.
      const winner = await findActiveTaskForOrder(q, req.userId, req.orderId!);
      if (!winner) throw new AppError('internal', 'order deduplication lost its task; retry');
      return { status: 200, body: await existingResponse(q, winner) };
    }
    case 'short':
      throw new AppError(
        'insufficient_credits',
        `plan "${req.plan}" costs ${plan.credits} credits; the balance is not enough`,
      );
    case 'refused':
      throw refusal(config, written.counts, now);
    case 'queued':
      return {
        status: 202,
        body: responseFor(
          written.task,
          {
            position: written.position,
            eta_seconds: Math.max(0, Math.round((estimate.finishAtMs - nowMs) / 1000)),
            predicted_start_at: new Date(estimate.startAtMs).toISOString(),
            predicted_finish_at: new Date(estimate.finishAtMs).toISOString(),
            eta_basis: 'submit',
            forecast_at: new Date(nowMs).toISOString(),
            forecast_stale: false,
          },
          false,
        ),
      };
  }
}
