import type { Config, ResolvedStep } from '../config/load.ts';
import {
  afterCallSuccess,
  afterFailure,
  afterPartialSuccess,
  afterStore,
  callStepJobs,
  stepResource,
  taskEnd,
  type FailureOutcome,
  type NextJobs,
  type TaskCounts,
} from '../policy/lifecycle.ts';
import type { OutcomeKind } from '../policy/retry.ts';
import { insertByOrder, type SimJob, type SimTask, type SimUser } from './state.ts';

/**
 * The simulator's tasks and jobs, moved by the server's lifecycle (src/policy/lifecycle.ts) as
 * src/pipeline/transitions.ts moves the rows: the engine (engine.ts) calls it for admissions and
 * outcomes, and test/pipeline/lifecycle-replay.test.ts drives it and the server with the same scripted
 * outcomes and compares every state.
 */

export interface TaskBookHooks {
  /** The simulated clock. */
  now(): number;
  /** A job is held back until then (a retry's backoff): the simulation must look again at that time. */
  wakeAt(atMs: number): void;
  /** Requests a call of `count` images makes on this provider, as its adapter splits it. */
  requestsOf(provider: string, count: number): number;
}

/** The counters the lifecycle reads, from a simulated task. */
export function countsOf(task: SimTask): TaskCounts & { creditsCharged: number } {
  return {
    imagesTotal: task.imagesTotal,
    done: task.done,
    failed: task.failed,
    canceled: task.canceled,
    creditsCharged: task.creditsCharged,
  };
}

export class TaskBook {
  readonly users = new Map<string, SimUser>();
  /** Queued jobs (ready or waiting on a backoff) by id. */
  readonly queuedJobs = new Map<string, SimJob>();
  readonly tasks: SimTask[] = [];
  queuedTasks = 0;
  runningTasks = 0;
  totalInFlight = 0;
  /** Attempts that ended in a retry spending an attempt. */
  retries = 0;
  /** Called with every job created (tests keep them to compare states). */
  onJob: ((job: SimJob) => void) | undefined;

  private readonly config: Config;
  private readonly hooks: TaskBookHooks;
  private readonly index = new Map<string, SimTask>();

  constructor(config: Config, hooks: TaskBookHooks) {
    this.config = config;
    this.hooks = hooks;
  }

  /** The task with this id (seeded tasks keep their ids). */
  task(id: string): SimTask | undefined {
    return this.index.get(id);
  }

  /** Tasks not ended yet. */
  openTasks(): SimTask[] {
    return this.tasks.filter((t) => t.state === 'queued' || t.state === 'running');
  }

  /** Adds a queued or running task to its user. */
  add(task: SimTask): void {
    this.tasks.push(task);
    this.index.set(task.id, task);
    let user = this.users.get(task.userId);
    if (!user)
      this.users.set(task.userId, (user = { id: task.userId, running: [], queued: [], inFlight: 0 }));
    if (task.state === 'queued') {
      user.queued.push(task);
      this.queuedTasks++;
    } else {
      user.running.push(task);
      this.runningTasks++;
    }
  }

  /** A task submitted now: queued, with its first step's jobs. */
  submit(id: string, userId: string, planName: string, type: string): SimTask {
    const plan = this.config.plans[planName]!;
    const pipeline = this.config.pipelines[type]!;
    const now = this.hooks.now();
    const task: SimTask = {
      id,
      userId,
      plan: planName,
      type,
      pipeline,
      weight: plan.weight,
      imagesTotal: plan.images,
      creditsCharged: plan.credits,
      creditsRefunded: 0,
      createdAtMs: now,
      deadlineAtMs: plan.deadlineSeconds !== undefined ? now + plan.deadlineSeconds * 1000 : undefined,
      state: 'queued',
      stage: pipeline.steps[0]!.name,
      startedAtMs: undefined,
      finishedAtMs: undefined,
      done: 0,
      failed: 0,
      canceled: false,
      queued: [],
      inFlight: 0,
      transformLeft: new Map(),
    };
    this.add(task);
    this.enqueueCallStep(task, pipeline.steps[0]!);
    return task;
  }

  /** The jobs of a call step, all at once (the task's first step). */
  enqueueCallStep(task: SimTask, step: ResolvedStep, readyAtMs = this.hooks.now()): void {
    const jobs = callStepJobs(step, task.imagesTotal, this.config.worker.maxAttempts);
    if (step.kind === 'transform') task.transformLeft.set(step.index, jobs.length);
    for (const j of jobs) this.enqueue(task, step, j.firstIndex, j.count, j.maxAttempts, readyAtMs);
  }

  enqueue(
    task: SimTask,
    step: ResolvedStep,
    firstIndex: number,
    count: number,
    maxAttempts: number,
    readyAtMs = this.hooks.now(),
    attempts = 0,
  ): SimJob {
    const job = this.newJob(task, step, firstIndex, count, maxAttempts, readyAtMs, attempts);
    this.queuedJobs.set(job.id, job);
    insertByOrder(task.queued, job);
    return job;
  }

  newJob(
    task: SimTask,
    step: ResolvedStep,
    firstIndex: number,
    count: number,
    maxAttempts: number,
    readyAtMs: number,
    attempts: number,
  ): SimJob {
    const job: SimJob = {
      id: `${task.id}.${step.index}.${firstIndex}`,
      task,
      step,
      kind: step.kind,
      resource: stepResource(task.pipeline, step),
      state: 'queued',
      firstIndex,
      count,
      attempts,
      maxAttempts,
      readyAtMs,
      order: step.index * 100000 + firstIndex,
      requests: step.kind === 'store' ? count : this.hooks.requestsOf(step.provider!, count),
      rateLimited: 0,
      firstRateLimitedAtMs: undefined,
    };
    this.onJob?.(job);
    return job;
  }

  /** An admitted job leaves the queue and runs; the task starts with its first admitted job. */
  admit(job: SimJob, startsTask: boolean, startedAtMs: number): void {
    const task = job.task;
    this.queuedJobs.delete(job.id);
    task.queued.splice(task.queued.indexOf(job), 1);
    const user = this.users.get(task.userId)!;
    if (startsTask) {
      if (task.state !== 'queued') throw new Error(`task ${task.id} started twice`);
      task.state = 'running';
      task.startedAtMs = startedAtMs;
      user.queued.splice(user.queued.indexOf(task), 1);
      user.running.push(task);
      this.queuedTasks--;
      this.runningTasks++;
    }
    job.attempts++;
    this.running(job);
  }

  /** Counts a running job (admitted now, or in flight in a seed). */
  running(job: SimJob): void {
    job.state = 'running';
    this.users.get(job.task.userId)!.inFlight++;
    job.task.inFlight++;
    this.totalInFlight++;
  }

  /** The job's attempt succeeded with `delivered` images (a store job: the images it stored). */
  succeed(job: SimJob, delivered = job.count): void {
    this.release(job, 'succeeded');
    const task = job.task;
    if (job.kind === 'store') {
      const after = afterStore(countsOf(task), delivered, job.count - delivered);
      task.done = after.done;
      task.failed = after.failed;
    } else {
      let unfinished = 0;
      if (job.kind === 'transform') {
        unfinished = task.transformLeft.get(job.step.index)! - 1;
        task.transformLeft.set(job.step.index, unfinished);
      }
      const outcome = afterCallSuccess(
        task.pipeline,
        countsOf(task),
        { stepIndex: job.step.index, firstIndex: job.firstIndex, count: job.count },
        delivered,
        unfinished,
        this.config.worker.maxAttempts,
      );
      task.failed = outcome.task.failed;
      if (outcome.next) this.createNext(task, outcome.next);
    }
    this.finishIfDone(task);
  }

  /**
   * A call that returned only `delivered` of its images before failing as `kind`: those are
   * stored, the job shrinks to the rest, and the rest fails or retries.
   */
  partial(
    job: SimJob,
    delivered: number,
    kind: Exclude<OutcomeKind, 'success'>,
    random: number,
  ): FailureOutcome<TaskCounts> {
    const task = job.task;
    const { next, shrunk } = afterPartialSuccess(
      task.pipeline,
      countsOf(task),
      job,
      delivered,
      this.config.worker.maxAttempts,
    );
    if (next) this.createNext(task, next);
    job.firstIndex = shrunk.firstIndex;
    job.count = shrunk.count;
    job.order = job.step.index * 100000 + job.firstIndex;
    job.requests = job.kind === 'store' ? job.count : this.hooks.requestsOf(job.step.provider!, job.count);
    return this.fail(job, kind, random);
  }

  /**
   * A store attempt that stored `stored` of its images, found `rejected` not to be images, and
   * failed on the rest as `kind`: the task counts the first two, the job shrinks to the rest, and
   * the rest fails or retries (src/pipeline/transitions.ts recordStoreOutcome).
   */
  storePartial(
    job: SimJob,
    stored: number,
    rejected: number,
    kind: Exclude<OutcomeKind, 'success'>,
    random: number,
  ): FailureOutcome<TaskCounts> {
    const task = job.task;
    const after = afterStore(countsOf(task), stored, rejected);
    task.done = after.done;
    task.failed = after.failed;
    job.count -= stored + rejected;
    job.requests = job.count;
    return this.fail(job, kind, random);
  }

  /** A failed attempt (a lease that expired is `transient`): retried, or failed with its images. */
  fail(
    job: SimJob,
    kind: Exclude<OutcomeKind, 'success'>,
    random: number,
    retryAfterMs?: number,
  ): FailureOutcome<TaskCounts> {
    const now = this.hooks.now();
    const w = this.config.worker;
    if (kind === 'rate_limited') {
      job.rateLimited++;
      job.firstRateLimitedAtMs ??= now;
    }
    const task = job.task;
    const outcome = afterFailure(countsOf(task), job, kind, {
      backoffBaseMs: w.backoffBaseMs,
      backoffMaxMs: w.backoffMaxMs,
      random,
      retryAfterMs,
      rateLimits: {
        count: job.rateLimited,
        sinceFirstMs: now - (job.firstRateLimitedAtMs ?? now),
        maxRetries: w.maxRateLimitedRetries,
        maxWaitMs: w.maxRateLimitedWaitMs,
      },
    });
    if (outcome.action === 'retry') {
      this.release(job, 'queued');
      if (!outcome.spendsAttempt) job.attempts = Math.max(0, job.attempts - 1);
      else this.retries++;
      job.readyAtMs = now + outcome.delayMs;
      this.queuedJobs.set(job.id, job);
      insertByOrder(task.queued, job);
      this.hooks.wakeAt(job.readyAtMs);
      return outcome;
    }
    this.release(job, 'failed');
    if (outcome.failsTask) this.dropQueuedJobs(task);
    task.failed = outcome.task.failed;
    this.finishIfDone(task);
    return outcome;
  }

  /** Canceled (by request, or its deadline): unstarted jobs stop now; running ones finish. */
  cancel(task: SimTask): void {
    if (task.state !== 'queued' && task.state !== 'running') return;
    task.canceled = true;
    this.dropQueuedJobs(task);
    this.finishIfDone(task);
  }

  /** A task not started by its deadline is canceled. */
  deadline(task: SimTask): void {
    if (task.state === 'queued') this.cancel(task);
  }

  /** Ends the task once it has no job queued or running, as the lifecycle says. */
  finishIfDone(task: SimTask): void {
    const end = taskEnd(
      { ...countsOf(task), open: task.state === 'queued' || task.state === 'running' },
      task.queued.length + task.inFlight,
    );
    if (!end) return;
    const user = this.users.get(task.userId)!;
    if (task.state === 'queued') {
      user.queued.splice(user.queued.indexOf(task), 1);
      this.queuedTasks--;
    } else {
      user.running.splice(user.running.indexOf(task), 1);
      this.runningTasks--;
    }
    task.state = end.state;
    task.failed = end.failed;
    task.creditsRefunded = end.refund;
    task.finishedAtMs = this.hooks.now();
    if (user.running.length === 0 && user.queued.length === 0) this.users.delete(user.id);
  }

  private release(job: SimJob, state: SimJob['state']): void {
    job.state = state;
    const user = this.users.get(job.task.userId)!;
    user.inFlight--;
    job.task.inFlight--;
    this.totalInFlight--;
  }

  private createNext(task: SimTask, next: NextJobs): void {
    if (next.step.kind === 'transform') task.transformLeft.set(next.step.index, next.jobs.length);
    for (const j of next.jobs) this.enqueue(task, next.step, j.firstIndex, j.count, j.maxAttempts);
    task.stage = next.step.name;
  }

  private dropQueuedJobs(task: SimTask): void {
    for (const j of task.queued) {
      j.state = 'canceled';
      this.queuedJobs.delete(j.id);
    }
    task.queued = [];
  }
}
