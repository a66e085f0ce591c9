import type { ResolvedPipeline, ResolvedStep } from '../config/load.ts';
import { attemptRefund, finalStateFor, type AttemptShare, type FinalState } from './credits.ts';
import { decideRetry, type OutcomeKind, type RateLimitHistory } from './retry.ts';
import type { JobKind } from './types.ts';

/**
 * The task/job lifecycle, pure: what a job's outcome does to its task. The server persists it
 * (src/pipeline/transitions.ts, src/scheduler/reaper.ts) and the planner replays it
 * (src/sim/tasks.ts), so both move a task through the same states:
 * test/pipeline/lifecycle-replay.test.ts runs random scenarios through both and compares every state.
 *
 * A task fans out into jobs step by step:
 * - transform step: `calls` jobs, each one provider call whose outputs replace the inputs; the next
 *   step's jobs come when the step's last call succeeds;
 * - generate step: ceil(images / batchSize) jobs, batch i covering images [i·B, min(N, (i+1)·B));
 * - store step: one job per batch a call returned (images [firstIndex, firstIndex + n)), created as
 *   soon as the call returns, cut into jobs of at most the store's concurrency: a store job of k
 *   images counts k against that concurrency (src/policy/admission.ts), so the store never holds
 *   more images at once than its concurrency, and a batch pays one admission, one claim and one
 *   outcome transaction instead of one per image. A store job that stored some of its images and
 *   failed on others shrinks to the images still owed (`count`, and its input's `indices`).
 * A task ends once none of its jobs is queued, admitted or running; the images not delivered
 * count as failed, and their share of the charge is refunded.
 */

/** A task's image counters and whether it was canceled (by request or its deadline). */
export interface TaskCounts {
  imagesTotal: number;
  done: number;
  failed: number;
  canceled: boolean;
}

/** A job to create: the images [firstIndex, firstIndex + count) of a step. */
export interface JobSpec {
  stepIndex: number;
  firstIndex: number;
  count: number;
  maxAttempts: number;
}

/** The job an outcome is about. */
export interface JobFacts {
  kind: JobKind;
  firstIndex: number;
  count: number;
  attempts: number;
  maxAttempts: number;
}

export function storeResource(pipeline: ResolvedPipeline, step: ResolvedStep): string {
  return `store:${pipeline.name}.${step.name}`;
}

/** The resource a step's jobs are admitted against: its provider, or its store. */
export function stepResource(pipeline: ResolvedPipeline, step: ResolvedStep): string {
  return step.kind === 'store' ? storeResource(pipeline, step) : step.provider!;
}

export function maxAttemptsOf(step: ResolvedStep, defaultMaxAttempts: number): number {
  return step.maxAttempts > 0 ? step.maxAttempts : defaultMaxAttempts;
}

export function storeStepOf(pipeline: ResolvedPipeline): ResolvedStep | undefined {
  return pipeline.steps.find((s) => s.kind === 'store');
}

/**
 * Runs of consecutive image indices, each cut at `batchSize`: the batches of a generate step
 * that owes only these images (a retried task). Indices ascending, distinct.
 */
export function batchesOf(indices: number[], batchSize: number): Array<{ first: number; count: number }> {
  const batches: Array<{ first: number; count: number }> = [];
  for (const i of indices) {
    const last = batches[batches.length - 1];
    if (last && last.first + last.count === i && last.count < batchSize) last.count++;
    else batches.push({ first: i, count: 1 });
  }
  return batches;
}

/** Indices in [0, imagesTotal) with no delivered image, ascending. */
export function missingImages(imagesTotal: number, delivered: number[]): number[] {
  const done = new Set(delivered);
  return Array.from({ length: imagesTotal }, (_, i) => i).filter((i) => !done.has(i));
}

/**
 * Jobs of a transform or generate step. A generate step covers every image, or only `owed`
 * (the images a retried task has not delivered).
 */
export function callStepJobs(
  step: ResolvedStep,
  imagesTotal: number,
  defaultMaxAttempts: number,
  owed?: number[],
): JobSpec[] {
  const maxAttempts = maxAttemptsOf(step, defaultMaxAttempts);
  if (step.kind === 'generate' && owed)
    return batchesOf(owed, step.batchSize).map((b) => ({
      stepIndex: step.index,
      firstIndex: b.first,
      count: b.count,
      maxAttempts,
    }));
  if (step.kind === 'transform')
    return Array.from({ length: step.calls }, (_, i) => ({
      stepIndex: step.index,
      firstIndex: i,
      count: 1,
      maxAttempts,
    }));
  const jobs: JobSpec[] = [];
  for (let first = 0; first < imagesTotal; first += step.batchSize)
    jobs.push({
      stepIndex: step.index,
      firstIndex: first,
      count: Math.min(step.batchSize, imagesTotal - first),
      maxAttempts,
    });
  return jobs;
}

/** Images one store job may hold: the store step's concurrency (a job's images are stored at once). */
export function storeJobSize(step: Pick<ResolvedStep, 'concurrency'>): number {
  return Math.max(1, Math.floor(step.concurrency ?? 1));
}

/**
 * The store jobs of the images [firstIndex, firstIndex + images) one call returned: consecutive
 * runs of at most `storeJobSize(step)` images.
 */
export function storeStepJobs(
  step: ResolvedStep,
  firstIndex: number,
  images: number,
  defaultMaxAttempts: number,
): JobSpec[] {
  const maxAttempts = maxAttemptsOf(step, defaultMaxAttempts);
  const size = storeJobSize(step);
  const jobs: JobSpec[] = [];
  for (let i = 0; i < images; i += size)
    jobs.push({
      stepIndex: step.index,
      firstIndex: firstIndex + i,
      count: Math.min(size, images - i),
      maxAttempts,
    });
  return jobs;
}

/** Nothing more to start: canceled, or every image already accounted for. */
export function isSettled(t: TaskCounts): boolean {
  return t.canceled || t.done + t.failed >= t.imagesTotal;
}

/** Counts images delivered and failed; failures never exceed the images not delivered. */
export function withUnits<T extends TaskCounts>(t: T, done: number, failed: number): T {
  const d = t.done + done;
  return { ...t, done: d, failed: Math.min(t.imagesTotal - d, t.failed + failed) };
}

/** The next step's jobs an outcome creates; the task's stage becomes `step.name`. */
export interface NextJobs {
  step: ResolvedStep;
  jobs: JobSpec[];
  /** Call steps: their inputs are the outputs of this step's succeeded jobs. */
  inputsFromStep?: number;
}

export interface CallSucceeded<T extends TaskCounts> {
  /** The task's counters after the outcome (a batch that returned fewer images fails the rest). */
  task: T;
  /** Images of the batch that came back without an image: failed now. */
  failedUnits: number;
  next: NextJobs | undefined;
}

/**
 * A provider call succeeded and returned `delivered` images. `unfinishedInStep`: the jobs of a
 * transform step not yet ended, this one excluded (unused for other steps). `owed`: a retried
 * task's images not delivered yet, when it has delivered some (the next generate step runs only those).
 */
export function afterCallSuccess<T extends TaskCounts>(
  pipeline: ResolvedPipeline,
  task: T,
  job: Pick<JobFacts, 'firstIndex' | 'count'> & { stepIndex: number },
  delivered: number,
  unfinishedInStep: number,
  defaultMaxAttempts: number,
  owed?: number[],
): CallSucceeded<T> {
  const step = pipeline.steps[job.stepIndex]!;
  if (step.kind === 'generate') {
    const failedUnits = Math.max(0, job.count - delivered);
    const after = failedUnits > 0 ? withUnits(task, 0, failedUnits) : task;
    return {
      task: after,
      failedUnits,
      next: storeJobsFor(pipeline, after, job.firstIndex, delivered, defaultMaxAttempts),
    };
  }
  if (step.kind === 'transform' && !isSettled(task) && unfinishedInStep === 0) {
    const next = pipeline.steps[step.index + 1];
    if (next && next.kind !== 'store')
      return {
        task,
        failedUnits: 0,
        next: {
          step: next,
          jobs: callStepJobs(next, task.imagesTotal, defaultMaxAttempts, owed),
          inputsFromStep: step.index,
        },
      };
  }
  return { task, failedUnits: 0, next: undefined };
}

/**
 * A call that returned only some of its images (a batch split into several requests, some of
 * which failed): the images that came back are stored, the job shrinks to the images still owed,
 * and that remainder is then treated as the failure says (`afterFailure` on the shrunk job).
 */
export function afterPartialSuccess<T extends TaskCounts>(
  pipeline: ResolvedPipeline,
  task: T,
  job: Pick<JobFacts, 'firstIndex' | 'count'>,
  delivered: number,
  defaultMaxAttempts: number,
): { next: NextJobs | undefined; shrunk: { firstIndex: number; count: number } } {
  return {
    next: storeJobsFor(pipeline, task, job.firstIndex, delivered, defaultMaxAttempts),
    shrunk: { firstIndex: job.firstIndex + delivered, count: job.count - delivered },
  };
}

function storeJobsFor(
  pipeline: ResolvedPipeline,
  task: TaskCounts,
  firstIndex: number,
  delivered: number,
  defaultMaxAttempts: number,
): NextJobs | undefined {
  const store = storeStepOf(pipeline);
  if (!store || isSettled(task) || delivered <= 0) return undefined;
  return { step: store, jobs: storeStepJobs(store, firstIndex, delivered, defaultMaxAttempts) };
}

/**
 * A store attempt's results: `stored` images newly delivered (an index already delivered is not
 * counted again), `rejected` failed for good (bytes that are not an image: only those fail and
 * are refunded at the task's end). Images still owed after a transient failure shrink the job to
 * them, and that remainder is treated as `afterFailure` says.
 */
export function afterStore<T extends TaskCounts>(task: T, stored: number, rejected: number): T {
  return withUnits(task, stored, rejected);
}

/** Inputs of the retry decision that only the caller can know (randomness, history, hints). */
export interface RetryContext {
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** In [0, 1): the backoff's jitter. */
  random: number;
  /** A provider's retry hint (not for rate limits: their key's cool-down holds the job back). */
  retryAfterMs?: number | undefined;
  rateLimits?: RateLimitHistory | undefined;
}

export type FailureOutcome<T extends TaskCounts> =
  | { action: 'retry'; delayMs: number; spendsAttempt: boolean }
  | {
      action: 'fail';
      reason?: 'rate_limit_bound';
      /** The task's counters with the job's images failed. */
      task: T;
      /**
       * A transform step failed: without its output nothing downstream can run, so the task's
       * other unstarted jobs are canceled and all its undelivered images fail.
       */
      failsTask: boolean;
    };

/**
 * A failed attempt (an error, a timeout, a rate limit, or a lease that expired): retried per
 * src/policy/retry.ts unless the task is settled, else the job fails with the images it stood for.
 */
export function afterFailure<T extends TaskCounts>(
  task: T,
  job: JobFacts,
  kind: Exclude<OutcomeKind, 'success'>,
  ctx: RetryContext,
): FailureOutcome<T> {
  const decision = decideRetry(
    kind,
    job.attempts,
    job.maxAttempts,
    {
      baseMs: ctx.backoffBaseMs,
      maxMs: ctx.backoffMaxMs,
      random: ctx.random,
      retryAfterMs: kind === 'rate_limited' ? undefined : ctx.retryAfterMs,
    },
    ctx.rateLimits,
  );
  if (decision.action === 'retry' && !isSettled(task)) return decision;
  const failsTask = job.kind === 'transform';
  return {
    action: 'fail',
    ...(decision.action === 'fail' && decision.reason ? { reason: decision.reason } : {}),
    task: withUnits(task, 0, failsTask ? task.imagesTotal : job.count),
    failsTask,
  };
}

/** How a task ends: its final state, the images that count as failed, the credits refunded. */
export interface TaskEnd {
  state: FinalState;
  failed: number;
  refund: number;
}

/**
 * The task's end once it has no job queued, admitted or running (undefined while it has, or when
 * it has already ended): images not delivered fail; the undelivered share of the charge is refunded.
 * A retried task (`attempt`: what its current attempt ran and was charged) is refunded the share
 * of that attempt's charge for the images still missing, which are exactly its own undelivered ones.
 */
export function taskEnd(
  task: TaskCounts & { open: boolean; creditsCharged: number; attempt?: AttemptShare | undefined },
  activeJobs: number,
): TaskEnd | undefined {
  if (!task.open || activeJobs > 0) return undefined;
  return {
    state: finalStateFor(task.imagesTotal, task.done, task.canceled),
    failed: task.imagesTotal - task.done,
    refund: attemptRefund(
      task.attempt ?? { images: task.imagesTotal, credits: task.creditsCharged },
      task.imagesTotal - task.done,
    ),
  };
}

/** What a task's earlier attempts left of one job: enough to see which work is still owed. */
export interface JobHistory {
  step_index: number;
  first_index: number;
  state: string;
  output: { keys: string[] } | null;
}

/**
 * Where an admin retry of a failed or partial task resumes, and its jobs: the first call step
 * with work still owed. A transform step runs again only the calls that did not succeed (the
 * ones that did keep their staged outputs); once every transform is done, the generate step
 * runs only the images not `delivered`, from the last transform's outputs (`inputKeys`).
 */
export function retryStart(
  pipeline: ResolvedPipeline,
  imagesTotal: number,
  history: JobHistory[],
  delivered: number[],
  taskInputKeys: string[],
  defaultMaxAttempts: number,
): { step: ResolvedStep; jobs: JobSpec[]; inputKeys: string[] } {
  let inputKeys = taskInputKeys;
  for (const step of pipeline.steps) {
    if (step.kind === 'transform') {
      const succeeded = history
        .filter((j) => j.step_index === step.index && j.state === 'succeeded')
        .sort((a, b) => a.first_index - b.first_index);
      const have = new Set(succeeded.map((j) => j.first_index));
      const jobs = callStepJobs(step, imagesTotal, defaultMaxAttempts).filter((j) => !have.has(j.firstIndex));
      if (jobs.length > 0) return { step, jobs, inputKeys };
      inputKeys = succeeded.flatMap((j) => j.output?.keys ?? []);
    } else if (step.kind === 'generate') {
      const owed = missingImages(imagesTotal, delivered);
      return { step, jobs: callStepJobs(step, imagesTotal, defaultMaxAttempts, owed), inputKeys };
    }
  }
  throw new Error(`pipeline "${pipeline.name}" has no generate step`);
}
