import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { cancelTask, recordJobFailure } from '../pipeline/transitions.ts';
import { buildPolicyInput } from './policy-input.ts';
import { decide } from '../policy/admission.ts';
import { Channels } from '../store/db.ts';
import { appendEvent } from '../store/events.ts';
import { findExpiredLeases, requeueStaleAdmissions } from '../store/jobs.ts';
import { acquireLeadership, resignLeadership } from '../store/leader.ts';
import { pruneKeyRequests, readScheduleSnapshot, writeAdmissions } from '../store/schedule.ts';
import { findExpiredQueuedTasks } from '../store/tasks.ts';
import { pruneIdempotencyKeys } from '../store/idempotency.ts';
import { deleteUpload, findExpiredUploads } from '../store/uploads.ts';
import { pruneWorkers } from '../store/workers.ts';
import { forecasterFor } from './forecaster.ts';
import { createWakeup } from './wakeup.ts';

const MIN_TICK_GAP_MS = 50;
const RETENTION_EVERY_MS = 10 * 60_000; // 10 min
const IDEMPOTENCY_KEY_HOURS = 24; // as Stripe: a key is remembered for a day

export interface SchedulerHandle {
  readonly id: string;
  isLeader(): boolean;
  /** Runs one admission pass now (tests); returns the number of jobs admitted. */
  tick(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The scheduler: every candidate process runs this loop, one of them holds the leader lease
 * and admits; the others renew nothing and take over when the lease lapses. Admission writes
 * are fenced by the term, so a paused former leader cannot admit.
 */
export async function startScheduler(ctx: Context, candidateId: string): Promise<SchedulerHandle> {
  const { db, config, log } = ctx;
  const s = config.scheduler;
  const windowMs = 60_000 + s.rpmWindowMarginMs;
  const wakeup = createWakeup();
  const unlisten = await db.listen(Channels.schedule, () => wakeup.wake());
  let term: number | undefined;
  let stopped = false;
  let lastHousekeepingMs = 0;
  let lastRetentionMs = 0;

  async function housekeeping(): Promise<void> {
    for (const job of await findExpiredLeases(db, 200)) {
      const result = await db.transaction((tx) =>
        recordJobFailure(
          tx,
          config,
          job,
          { kind: 'transient', message: 'lease expired: the worker stopped answering' },
          ctx.random(),
        ),
      );
      if (result.recorded) log.warn({ jobId: job.id, retried: result.retried }, 'job lease expired');
    }
    await db.transaction((tx) => requeueStaleAdmissions(tx, config.worker.leaseMs));
    for (const taskId of await findExpiredQueuedTasks(db, 200)) {
      await db.transaction((tx) =>
        cancelTask(tx, taskId, 'deadline_exceeded: no work started before the deadline'),
      );
      log.info({ taskId }, 'task canceled: deadline passed before it started');
    }
    await pruneKeyRequests(db, windowMs);
    await pruneWorkers(db, Math.max(60_000, config.worker.leaseMs * 4));
    if (Date.now() - lastRetentionMs > RETENTION_EVERY_MS) {
      lastRetentionMs = Date.now();
      await removeExpiredUploads();
      await pruneIdempotencyKeys(db, IDEMPOTENCY_KEY_HOURS);
    }
  }

  async function removeExpiredUploads(): Promise<void> {
    for (const upload of await findExpiredUploads(db, config.uploads.retentionHours, 500)) {
      await ctx.storage
        .delete(upload.storage_key)
        .catch((error: unknown) => log.warn({ err: coerceError(error) }, 'could not delete an upload file'));
      await deleteUpload(db, upload.id);
    }
  }

  async function tick(): Promise<number> {
    term = await acquireLeadership(db, candidateId, s.leaderLeaseMs);
    if (term === undefined) return 0;
    const nowWall = Date.now();
    if (nowWall - lastHousekeepingMs >= Math.min(1000, s.pollMs * 2)) {
      lastHousekeepingMs = nowWall;
      await housekeeping();
    }
    const snapshot = await readScheduleSnapshot(db, {
      windowMs,
      workerStaleMs: Math.max(config.worker.heartbeatMs * 3, 3000),
      maxJobs: 20_000,
      maxJobsPerUser: 200,
    });
    const input = buildPolicyInput(config, snapshot, windowMs);
    const decision = decide(input);
    nextWakeFromNowMs =
      decision.nextWakeAtMs !== undefined ? Math.max(0, decision.nextWakeAtMs - snapshot.nowMs) : undefined;
    if (decision.admissions.length === 0) return 0;
    const currentTerm = term;
    const written = await db.transaction(async (tx) => {
      const result = await writeAdmissions(
        tx,
        candidateId,
        currentTerm,
        decision.admissions.map((a) => ({
          jobId: a.jobId,
          keyId: a.keyId,
          provider: a.keyId ? a.resource : undefined,
          requests: a.requests,
        })),
      );
      for (const t of result?.startedTasks ?? [])
        await appendEvent(tx, t.id, t.user_id, 'running', { state: 'running' });
      return result;
    });
    if (!written) {
      log.warn({ term: currentTerm }, 'lost the scheduler lease before admitting; admissions dropped');
      term = undefined;
      return 0;
    }
    return written.admitted;
  }

  let nextWakeFromNowMs: number | undefined;
  const loop = (async () => {
    while (!stopped) {
      let delay = s.pollMs;
      try {
        const passStartedMs = performance.now();
        await tick();
        if (term !== undefined) ctx.telemetry?.schedulerPass((performance.now() - passStartedMs) / 1000);
        if (term !== undefined) forecasterFor(ctx).afterPass();
        if (term === undefined) delay = Math.max(100, Math.floor(s.leaderLeaseMs / 3));
        else if (nextWakeFromNowMs !== undefined)
          delay = Math.min(delay, Math.max(10, nextWakeFromNowMs + 5));
      } catch (error) {
        log.error({ err: coerceError(error) }, 'scheduler tick failed; retrying');
        delay = Math.min(5000, s.pollMs * 4);
      }
      if (!stopped) {
        // A burst of submits sends a NOTIFY each: coalesce them instead of a full pass per submit.
        await new Promise((r) => setTimeout(r, MIN_TICK_GAP_MS));
        await wakeup.sleep(Math.max(0, delay - MIN_TICK_GAP_MS));
      }
    }
  })();

  log.info({ candidateId }, 'scheduler candidate started');
  return {
    id: candidateId,
    isLeader: () => term !== undefined,
    tick,
    async stop() {
      stopped = true;
      wakeup.wake();
      await loop;
      await unlisten();
      if (term !== undefined) await resignLeadership(db, candidateId).catch(() => {});
      term = undefined;
    },
  };
}
