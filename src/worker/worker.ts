import { createHash } from 'node:crypto';
import type { Context } from '../context.ts';
import { keyIsUsable } from '../config/load.ts';
import { AppError, coerceError } from '../errors.ts';
import { extensionFor, stagedKey } from '../pipeline/plan-jobs.ts';
import {
  pipelineOf,
  recordCallSuccess,
  recordJobFailure,
  recordPartialSuccess,
  recordStoreOutcome,
  type FailureInfo,
} from '../pipeline/transitions.ts';
import {
  CallAborted,
  wasCanceled,
  type InputImage,
  type ProviderFailure,
  type ProviderOutcome,
} from '../providers/types.ts';
import { Channels, type Queryable } from '../store/db.ts';
import { appendEvent } from '../store/events.ts';
import { findCachedResult, releaseAttemptReservation, saveCachedResult } from '../store/cache.ts';
import { resultCacheKey } from '../pipeline/cache-key.ts';
import { claimJobsWithTasks } from '../store/attempts.ts';
import {
  markProviderDone,
  restampAttemptRequests,
  releaseJob,
  renewLeases,
  runningJobsOfCanceledTasks,
  saveRemoteRef,
  storeJobIndices,
  type JobRow,
} from '../store/jobs.ts';
import type { TaskRow } from '../store/tasks.ts';
import { createAfterCommitNotifier } from '../store/wake.ts';
import { heartbeatWorker, registerWorker, removeWorker } from '../store/workers.ts';
import { createWakeup } from '../scheduler/wakeup.ts';
import { hostname } from 'node:os';
import { LeaseRanOut, retryOnLostConnection } from './outcome-retry.ts';
import { mimeOfKey, storeOne } from './store-images.ts';

export interface WorkerHandle {
  readonly id: string;
  /** Jobs running right now. */
  running(): number;
  /** Stops claiming, lets running jobs finish within the grace period, releases the rest. */
  stop(graceMs?: number): Promise<void>;
}

interface RunningJob {
  job: JobRow;
  /** The job's task as the claim read it. */
  task: TaskRow;
  controller: AbortController;
  done: Promise<void>;
  /** performance.now() when the claim that started this attempt began. */
  claimedAt: number;
  /** performance.now() by which the lease may have run out: the last claim or renewal's start + leaseMs. */
  leaseUntil: number;
  /**
   * The outcome write has begun: from here the fenced write itself tells whether the lease still
   * held, and a lease the heartbeat cannot renew is the attempt's own recorded outcome, not a loss.
   */
  recording: boolean;
}

/** Writes an attempt's outcome in one transaction, retried on a lost connection while the lease lasts. */
type RecordOutcome = <T>(write: (tx: Queryable) => Promise<T>) => Promise<T>;

const PROGRESS_EVERY_MS = 500;

/** The stable code a job's error carries when its admitted key is gone (docs/errors.md). */
export const KEY_UNAVAILABLE = 'key_unavailable';

function failureOf(outcome: ProviderFailure): FailureInfo {
  return {
    kind: outcome.kind,
    message: outcome.message,
    retryAfterMs: 'retryAfterMs' in outcome ? outcome.retryAfterMs : undefined,
    rest: outcome.kind === 'rate_limited' ? outcome.rest : undefined,
  };
}

/**
 * A worker claims admitted jobs (up to its slots), runs each through its provider adapter or
 * the storage step, and records the outcome in one transaction fenced by the lease token. No
 * transaction stays open across a provider call. Heartbeats extend its leases; a job whose
 * lease is lost is abandoned (another worker owns it now).
 */
export async function startWorker(ctx: Context, workerId: string, roles: string): Promise<WorkerHandle> {
  const { db, config, log } = ctx;
  const w = config.worker;
  const slots = w.concurrency;
  const running = new Map<string, RunningJob>();
  const wakeup = createWakeup();
  let stopping = false;

  await registerWorker(db, { id: workerId, host: hostname(), pid: process.pid, roles, slots });
  const unlisten = await db.listen(Channels.work, () => wakeup.wake());
  // A success's outcome does not NOTIFY from its transaction; these wake-ups follow its commit.
  const wakes = createAfterCommitNotifier(db, (error) =>
    log.debug({ err: coerceError(error) }, 'wake-up not sent; the scheduler and SSE streams poll'),
  );

  /** Aborts the provider calls of these jobs whose task was canceled, telling the adapter why. */
  async function abortCanceled(jobs: RunningJob[]): Promise<void> {
    const calls = jobs.filter((r) => r.job.kind !== 'store' && !r.controller.signal.aborted);
    const canceled = await runningJobsOfCanceledTasks(
      db,
      calls.map((r) => r.job.id),
    );
    for (const r of calls) if (canceled.has(r.job.id)) r.controller.abort(new CallAborted('canceled'));
  }
  // A task event may be its cancel; the heartbeat checks too, in case a notification is missed.
  const unlistenTasks = await db.listen(Channels.task, (taskId) => {
    const jobs = [...running.values()].filter((r) => r.job.task_id === taskId);
    if (jobs.length > 0)
      abortCanceled(jobs).catch((error: unknown) =>
        log.warn({ err: coerceError(error) }, 'checking for a cancel failed'),
      );
  });

  const heartbeat = setInterval(() => {
    void (async () => {
      try {
        await heartbeatWorker(db, workerId, stopping);
        const held = [...running.values()].map((r) => ({ id: r.job.id, token: r.job.lease_token }));
        const sentAt = performance.now();
        const kept = await renewLeases(db, held, w.leaseMs);
        for (const r of running.values()) {
          if (kept.has(r.job.id)) r.leaseUntil = sentAt + w.leaseMs;
          if (!kept.has(r.job.id) && !r.recording && held.some((h) => h.id === r.job.id)) {
            log.warn({ jobId: r.job.id }, 'lease lost; abandoning the attempt');
            r.controller.abort(new CallAborted('lease_lost'));
          }
        }
        await abortCanceled([...running.values()].filter((r) => kept.has(r.job.id)));
      } catch (error) {
        log.warn({ err: coerceError(error) }, 'worker heartbeat failed');
      }
    })();
  }, w.heartbeatMs);

  function recorderFor(entry: RunningJob): RecordOutcome {
    const { job, controller } = entry;
    return (write) => {
      entry.recording = true;
      return retryOnLostConnection(() => db.transaction(write), {
        leaseUntil: () => entry.leaseUntil,
        // A cancel still wants its outcome written; a lost lease or a shutdown release does not.
        gone: () => controller.signal.aborted && !wasCanceled(controller.signal),
        random: ctx.random,
        onRetry: (error, tryNumber, delayMs) =>
          log.warn(
            { err: coerceError(error), jobId: job.id, try: tryNumber, delayMs },
            'recording the outcome failed on a lost connection; retrying',
          ),
      });
    };
  }

  async function runCall(
    job: JobRow,
    task: TaskRow,
    signal: AbortSignal,
    record: RecordOutcome,
    claimedAtMs: number,
  ): Promise<void> {
    const pipeline = pipelineOf(config, task);
    const step = pipeline.steps[job.step_index]!;
    const provider = config.providers[job.resource];
    const adapter = ctx.providers.get(job.resource);
    if (!provider || !adapter) throw new AppError('internal', `provider "${job.resource}" is not configured`);
    const key = provider.keys.find((k) => k.id === job.key_id);
    if (!key || !keyIsUsable(provider, key)) {
      // The scheduler chose this key and counted the call against its limits: another key's
      // limits know nothing of it, so the attempt fails (and is retried, admitted afresh).
      const message = `${KEY_UNAVAILABLE}: key "${job.key_id ?? ''}" of provider "${provider.name}" is not usable by this worker (removed, disabled or its secret missing); not sent with another key`;
      const result = await record((tx) =>
        recordJobFailure(tx, config, job, { kind: 'transient', message }, ctx.random()),
      );
      log.warn({ jobId: job.id, taskId: task.id, keyId: job.key_id, retried: result.retried }, message);
      return;
    }
    const inputKeys = job.input.keys ?? [];
    const inputs: InputImage[] = await Promise.all(
      inputKeys.map(async (k, i) => ({
        data: await ctx.storage.get(k),
        mime: mimeOfKey(k),
        role: task.inputs[i]?.role ?? pipeline.inputs[i] ?? 'input',
      })),
    );
    const prompt = step.prompt ? step.prompt.replaceAll('{{prompt}}', task.prompt) : task.prompt;
    const params = { ...provider.params, ...step.params, ...task.params };
    const cacheKey = step.cache
      ? resultCacheKey({
          provider: provider.name,
          providerType: provider.type,
          model: provider.model,
          step: step.name,
          prompt,
          params,
          seed: Number.isInteger(task.params.seed) ? (task.params.seed as number) : null,
          inputHashes: inputs.map((i) => createHash('sha256').update(i.data).digest('hex')),
          firstIndex: job.first_index,
          count: job.count,
        })
      : undefined;
    if (cacheKey && (await reuseCachedResult(job, task, step.name, cacheKey, record))) return;
    // The key's RPM window counts this call from the claim's stamp; when the inputs took more
    // than a quarter of the window's safety margin to load, stamp it again as it leaves (the
    // chaos suite saw a 41st request reach a key of 40 rpm after a slow start).
    if (
      performance.now() - claimedAtMs > config.scheduler.rpmWindowMarginMs / 4 &&
      !(await restampAttemptRequests(db, job.id, job.lease_token))
    ) {
      log.warn({ jobId: job.id }, 'the attempt no longer holds its lease; the call is not sent');
      return;
    }
    const reportProgress = throttledProgress(job, task, step.name);
    let outcome: ProviderOutcome;
    // True once the adapter returned: every request of the call has its answer (a throw may
    // leave some of a split call's requests open, so it frees nothing early).
    let answered = false;
    // The provider's slot frees when its answer is in, not when the outcome is recorded: the
    // mark is written while the images are checked and staged (or the failure recorded).
    let providerDone: Promise<void> | undefined;
    const callStartedMs = performance.now();
    try {
      outcome = await adapter.call({
        taskId: task.id,
        jobId: job.id,
        step: step.name,
        prompt,
        inputs,
        count: job.count,
        seed: (task.seed + job.first_index * 7919 + job.step_index * 104729) % 2 ** 31,
        firstIndex: job.first_index,
        params,
        key: { id: key.id, secret: key.secret },
        // The adapter owns the call's timeout (provider.timeoutMs): one timer, so a timeout is
        // never reported as the caller's abort because a second timer here fired first.
        signal,
        onProgress: reportProgress,
        onAnswered: () => void (providerDone ??= releaseProviderSlot(job)),
        remoteRef: job.remote_ref ?? undefined,
        saveRemoteRef: async (ref) => {
          // Thrown before the adapter queues anything: a stale attempt starts no provider work.
          if (!(await saveRemoteRef(db, job.id, job.lease_token, ref)))
            throw new Error('the attempt no longer holds its job (lease lost or outcome recorded)');
        },
      });
      answered = true;
    } catch (error) {
      // Adapters classify provider behaviour; anything thrown is an unexpected, retryable fault.
      outcome = { kind: 'transient', message: coerceError(error).message };
    }
    if (signal.aborted) {
      // Canceled: the job ends now, so the task ends `canceled` without waiting for its lease to expire.
      if (wasCanceled(signal)) {
        const message = outcome.kind === 'success' ? 'canceled' : outcome.message;
        await record((tx) => recordJobFailure(tx, config, job, { kind: 'permanent', message }, ctx.random()));
      }
      return; // lease lost or shutdown: the outcome belongs to nobody now
    }
    ctx.telemetry?.providerCall({
      provider: provider.name,
      keyId: key.id,
      outcome: outcome.kind,
      latencyMs: performance.now() - callStartedMs,
      message: outcome.kind === 'success' ? undefined : outcome.message,
    });
    // An adapter that does not say when its answer is in is answered now. A timeout is no answer
    // (the request may still run there): that slot frees with the outcome.
    if (answered && outcome.kind !== 'timeout') providerDone ??= releaseProviderSlot(job);
    if (outcome.kind !== 'success') {
      const failure = failureOf(outcome);
      const result = await record((tx) => recordJobFailure(tx, config, job, failure, ctx.random()));
      await providerDone;
      log.info(
        { jobId: job.id, taskId: task.id, kind: outcome.kind, retried: result.retried },
        `provider call failed: ${outcome.message}`,
      );
      return;
    }
    const images = outcome.images.slice(0, job.count);
    // Written at once: each put is a file write, an fsync and a rename, and the call's slot waits.
    const keys = images.map((image, i) =>
      stagedKey(task.id, step.name, job.first_index + i, extensionFor(image.mime)),
    );
    await Promise.all([
      providerDone,
      ...images.map((image, i) => ctx.storage.put(keys[i]!, image.data, image.mime)),
    ]);
    if (outcome.shortfall && keys.length < job.count && step.kind === 'generate') {
      // Some requests of a split batch failed: keep what came back, retry or fail the rest.
      const failure = failureOf(outcome.shortfall);
      const result = await record((tx) => recordPartialSuccess(tx, config, job, keys, failure, ctx.random()));
      log.info(
        { jobId: job.id, taskId: task.id, kept: keys.length, kind: failure.kind, retried: result.retried },
        `provider call partly failed: ${failure.message}`,
      );
      return;
    }
    const recorded = await record((tx) => recordCallSuccess(tx, config, job, keys));
    if (recorded) wakes.send(Channels.schedule);
    if (!recorded) log.warn({ jobId: job.id }, 'stale attempt: outcome discarded');
    else if (cacheKey)
      await saveToCache(cacheKey, images).catch((error: unknown) =>
        log.warn({ err: coerceError(error) }, 'result not cached'),
      );
  }

  /**
   * Marks the attempt's provider request answered (store/jobs.ts markProviderDone). Never fails
   * the attempt: without the mark the job counts against the provider until its outcome, as
   * before.
   */
  async function releaseProviderSlot(job: JobRow): Promise<void> {
    try {
      await markProviderDone(db, job.id, job.lease_token);
    } catch (error) {
      log.debug({ err: coerceError(error), jobId: job.id }, 'provider answer not marked');
    }
  }

  /** Copies a cached result into this job's staging area and records it as the job's success. */
  async function reuseCachedResult(
    job: JobRow,
    task: TaskRow,
    stepName: string,
    cacheKey: string,
    record: RecordOutcome,
  ): Promise<boolean> {
    const cached = await findCachedResult(db, cacheKey);
    if (!cached || cached.length < job.count) return false;
    let keys: string[];
    try {
      keys = await Promise.all(
        cached.slice(0, job.count).map(async (key, i) => {
          const data = await ctx.storage.get(key);
          const ext = key.slice(key.lastIndexOf('.') + 1);
          const staged = stagedKey(task.id, stepName, job.first_index + i, ext);
          await ctx.storage.put(staged, data, mimeOfKey(key));
          return staged;
        }),
      );
    } catch (error) {
      log.warn({ err: coerceError(error), cacheKey }, 'cached result unreadable; calling the provider');
      return false;
    }
    const recorded = await record(async (tx) => {
      if (!(await recordCallSuccess(tx, config, job, keys, { cached: true }))) return false;
      await releaseAttemptReservation(tx, job.id);
      return true;
    });
    if (recorded) wakes.send(Channels.schedule);
    if (recorded) log.debug({ jobId: job.id, cacheKey }, 'result cache hit');
    return true;
  }

  async function saveToCache(cacheKey: string, images: Array<{ data: Buffer; mime: string }>): Promise<void> {
    const keys = images.map((image, i) => `cache/${cacheKey}/${i}.${extensionFor(image.mime)}`);
    await Promise.all(images.map((image, i) => ctx.storage.put(keys[i]!, image.data, image.mime)));
    await saveCachedResult(db, cacheKey, keys);
  }

  /**
   * Provider-side progress of one call (ComfyUI's sampler steps) becomes a `step_progress`
   * event, at most one per PROGRESS_EVERY_MS: SSE streams forward it.
   */
  function throttledProgress(job: JobRow, task: TaskRow, step: string): (fraction: number) => void {
    let lastAt = 0;
    return (fraction) => {
      const now = Date.now();
      if (fraction < 1 && now - lastAt < PROGRESS_EVERY_MS) return;
      lastAt = now;
      void appendEvent(db, task.id, task.user_id, 'step_progress', {
        job_id: job.id,
        step,
        first_index: job.first_index,
        count: job.count,
        fraction: Math.round(fraction * 1000) / 1000,
      }).catch((error: unknown) => log.debug({ err: coerceError(error) }, 'progress event not recorded'));
    };
  }

  /**
   * A store job's images, stored at once (the job holds at most the store's concurrency), and
   * recorded in one transaction: the stored ones delivered, the ones that are not images failed,
   * the ones that failed on a transient fault retried (the job shrinks to them).
   */
  async function runStore(job: JobRow, task: TaskRow, record: RecordOutcome): Promise<void> {
    const staged = job.input.keys ?? [];
    if (staged.length === 0) throw new AppError('internal', 'store job without an input');
    const indices = storeJobIndices(job);
    const cached = job.input.cached === true;
    const results = await Promise.all(
      staged.map((k, i) => storeOne(ctx.storage, task.id, k, indices[i]!, cached)),
    );
    const stored = results.flatMap((r) => (r.kind === 'stored' ? [r] : []));
    const rejected = results.flatMap((r) => (r.kind === 'rejected' ? [r] : []));
    const owed = results.flatMap((r) => (r.kind === 'owed' ? [r] : []));
    const failure: FailureInfo | undefined =
      owed.length > 0
        ? {
            kind: 'transient',
            message:
              owed.length === 1 ? owed[0]!.message : `${owed[0]!.message} (and ${owed.length - 1} more)`,
          }
        : undefined;
    const outcome = await record((tx) =>
      recordStoreOutcome(
        tx,
        config,
        job,
        {
          stored: stored.map((r) => r.image),
          rejected,
          owed: failure ? { images: owed.map((o) => ({ index: o.index, key: o.key })), failure } : undefined,
        },
        ctx.random(),
      ),
    );
    if (!outcome.recorded) return;
    wakes.send(Channels.schedule);
    wakes.send(Channels.task, task.id);
    if (rejected.length > 0 || failure)
      log.info(
        {
          jobId: job.id,
          taskId: task.id,
          stored: stored.length,
          rejected: rejected.length,
          owed: owed.length,
        },
        `storing images failed: ${[...rejected, ...owed][0]!.message}`,
      );
    // Staged copies a storage could not move into place (S3): put again, deleted now.
    await Promise.all(
      stored.flatMap((r) => (r.staged ? [ctx.storage.delete(r.staged).catch(() => {})] : [])),
    );
  }

  async function run(entry: RunningJob): Promise<void> {
    const { job, task, controller } = entry;
    const record = recorderFor(entry);
    try {
      if (job.kind === 'store') await runStore(job, task, record);
      else await runCall(job, task, controller.signal, record, entry.claimedAt);
    } catch (error) {
      if (controller.signal.aborted) return;
      const e = coerceError(error);
      if (e instanceof LeaseRanOut) {
        log.warn({ err: e.cause, jobId: job.id }, e.message);
        return;
      }
      log.error({ err: e, jobId: job.id }, 'job attempt failed unexpectedly');
      await record((tx) =>
        recordJobFailure(tx, config, job, { kind: 'transient', message: e.message }, ctx.random()),
      ).catch((err: unknown) =>
        log.error(
          { err: coerceError(err), jobId: job.id },
          'could not record the failure; the lease will expire',
        ),
      );
    }
  }

  // Admitted jobs may be waiting for this worker's slots: the last claim took as many jobs as it
  // had slots free (or none was free). Only then does a slot that frees call for a claim; otherwise
  // the admissions' NOTIFY (or the poll) does. Claiming after every job's end found nothing for
  // two claims in three on the fairness bench: 570 of 842, each a statement on PGlite's one thread.
  let slotsFull = false;
  const loop = (async () => {
    while (!stopping) {
      let again = false;
      try {
        const free = slots - running.size;
        slotsFull = free <= 0;
        if (free > 0) {
          const claimedAt = performance.now();
          const claims = await claimJobsWithTasks(db, workerId, free, w.leaseMs);
          for (const { job, task } of claims) {
            const controller = new AbortController();
            const entry: RunningJob = {
              job,
              task,
              controller,
              done: Promise.resolve(),
              claimedAt,
              leaseUntil: claimedAt + w.leaseMs,
              recording: false,
            };
            entry.done = run(entry).finally(() => {
              running.delete(job.id);
              if (slotsFull) wakeup.wake();
            });
            running.set(job.id, entry);
          }
          // Every free slot taken: more may be waiting, claim again (with the slots still free).
          again = claims.length === free;
          slotsFull = again;
        }
      } catch (error) {
        log.warn({ err: coerceError(error) }, 'claiming jobs failed; retrying');
      }
      if (!stopping && !again) await wakeup.sleep(w.pollMs);
    }
  })();

  log.info({ workerId, slots }, 'worker started');
  return {
    id: workerId,
    running: () => running.size,
    async stop(graceMs = w.shutdownGraceMs) {
      if (stopping) return;
      stopping = true;
      wakeup.wake();
      await loop;
      await heartbeatWorker(db, workerId, true).catch(() => {});
      const all = Promise.all([...running.values()].map((r) => r.done));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        all.then(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(true), graceMs);
        }),
      ]);
      if (timer) clearTimeout(timer);
      if (timedOut) {
        for (const r of running.values()) {
          r.controller.abort(new CallAborted('shutdown'));
          await db.transaction((tx) => releaseJob(tx, r.job.id, r.job.lease_token)).catch(() => {});
        }
        await all;
      }
      clearInterval(heartbeat);
      await wakes.flush();
      await unlisten();
      await unlistenTasks();
      await removeWorker(db, workerId).catch(() => {});
      log.info({ workerId, released: timedOut }, 'worker stopped');
    },
  };
}
