import { rpmWindowMs, workerStaleMs } from '../config/load.ts';
import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { storeResource } from '../policy/lifecycle.ts';
import { meanDispatchMs } from '../policy/policy-input.ts';
import { Channels } from '../store/db.ts';
import { readCapacity, writeAdmissions } from '../store/schedule.ts';
import { meanStepDurations } from '../store/stats.ts';
import { cancelMissedDeadlines } from './deadlines.ts';
import { every, type Periodic } from './every.ts';
import { startLeadership } from './leadership.ts';
import { forecasterFor } from './forecaster.ts';
import { planPass } from './pass.ts';
import { reapExpiredLeases } from './reaper.ts';
import { applyRetention, pruneSchedulingState } from './retention.ts';
import { createWakeup } from './wakeup.ts';

const MIN_PASS_GAP_MS = 10;
const RETENTION_EVERY_MS = 10 * 60_000; // 10 min
const PRUNE_EVERY_MS = 5_000;
const DISPATCH_EVERY_MS = 10_000;

export interface SchedulerHandle {
  readonly id: string;
  isLeader(): boolean;
  /** Runs one admission pass now (tests); returns the number of jobs admitted. */
  tick(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * The scheduler: every candidate process runs this, one of them holds the leader lease and
 * admits; the others take over when the lease lapses. Admission is event-driven: every
 * change that frees or creates capacity (a submit, a job's outcome, a release, a cancel, a
 * lease reaped) sends NOTIFY from its own transaction (a job's success right after its commit:
 * store/wake.ts) and wakes the pass at once; wake-ups that arrive during a pass are coalesced
 * into one more pass; `pollMs` is only the fallback.
 * The lease, the reaper, deadline cancels and retention each run on their own timer.
 * Admission writes are fenced by the term, so a paused former leader cannot admit.
 */
export async function startScheduler(ctx: Context, candidateId: string): Promise<SchedulerHandle> {
  const { db, config, log } = ctx;
  const s = config.scheduler;
  const windowMs = rpmWindowMs(config);
  const wakeup = createWakeup();
  const unlisten = await db.listen(Channels.schedule, () => wakeup.wake());
  const leadership = startLeadership(db, candidateId, s.leaderLeaseMs, log, () => wakeup.wake());
  // Every candidate warms its forecast thread at once: a leader (this one or a later one)
  // forecasts after its first pass without compiling the simulator first.
  forecasterFor(ctx)
    .warm()
    .catch((error: unknown) => log.warn({ err: coerceError(error) }, 'forecast thread did not start'));
  let stopped = false;
  let dispatchMs = 0;
  let nextWakeFromNowMs: number | undefined;

  async function tick(): Promise<number> {
    const term = leadership.term();
    if (term === undefined) return 0;
    const capacity = await readCapacity(db, {
      windowMs,
      workerStaleMs: workerStaleMs(config),
    });
    const { decision } = await planPass(db, config, capacity, windowMs, dispatchMs);
    nextWakeFromNowMs =
      decision.nextWakeAtMs !== undefined ? Math.max(0, decision.nextWakeAtMs - capacity.nowMs) : undefined;
    if (decision.admissions.length === 0) return 0;
    const written = await writeAdmissions(
      db,
      candidateId,
      term,
      decision.admissions.map((a) => ({ jobId: a.jobId, keyId: a.keyId, requests: a.requests })),
    );
    if (!written) {
      log.warn({ term }, 'lost the scheduler lease before admitting; admissions dropped');
      leadership.lost();
      return 0;
    }
    return written.admitted;
  }

  const loop = (async () => {
    while (!stopped) {
      let delay = s.pollMs;
      try {
        const passStartedMs = performance.now();
        await tick();
        if (leadership.term() !== undefined) {
          ctx.telemetry?.schedulerPass((performance.now() - passStartedMs) / 1000);
          // After the admissions are written: the forecast of the queue (at most every ~1 s).
          forecasterFor(ctx).afterPass();
        }
        if (nextWakeFromNowMs !== undefined) delay = Math.min(delay, Math.max(10, nextWakeFromNowMs + 5));
      } catch (error) {
        log.error({ err: coerceError(error) }, 'scheduler pass failed; retrying');
        delay = Math.min(5000, s.pollMs * 4);
      }
      if (!stopped) {
        // Wake-ups during the pass were coalesced into one; a short breath lets the outcomes
        // that caused them (and on PGlite, everything else on its one connection) through.
        await new Promise((r) => setTimeout(r, MIN_PASS_GAP_MS));
        await wakeup.sleep(Math.max(0, delay - MIN_PASS_GAP_MS));
      }
    }
  })();

  const maintenanceMs = Math.min(1000, s.pollMs * 2);
  const asLeader = (fn: () => Promise<void>) => async () => {
    if (leadership.term() !== undefined) await fn();
  };
  let lastRetentionMs = 0;
  const loops: Periodic[] = [
    every(
      'lease reaper',
      () => maintenanceMs,
      asLeader(async () => {
        const r = await reapExpiredLeases(db, config, ctx.random);
        if (r.requeued + r.failed > 0) log.warn(r, 'job leases expired: the workers stopped answering');
      }),
      log,
    ),
    every(
      'deadline cancels',
      () => maintenanceMs,
      asLeader(async () => {
        const ids = await cancelMissedDeadlines(db);
        if (ids.length > 0)
          log.info({ tasks: ids.length }, 'tasks canceled: deadline passed before they started');
      }),
      log,
    ),
    every(
      'retention',
      () => PRUNE_EVERY_MS,
      asLeader(async () => {
        await pruneSchedulingState(ctx, windowMs);
        if (Date.now() - lastRetentionMs < RETENTION_EVERY_MS) return;
        lastRetentionMs = Date.now();
        await applyRetention(ctx);
      }),
      log,
    ),
    every(
      'dispatch delay',
      () => DISPATCH_EVERY_MS,
      asLeader(async () => {
        dispatchMs = meanDispatchMs(await meanStepDurations(db, stepRefs(ctx)));
      }),
      log,
    ),
  ];

  log.info({ candidateId }, 'scheduler candidate started');
  return {
    id: candidateId,
    isLeader: () => leadership.term() !== undefined,
    tick,
    async stop() {
      stopped = true;
      wakeup.wake();
      await loop;
      await Promise.all(loops.map((l) => l.stop()));
      await unlisten();
      await leadership.stop();
    },
  };
}

/** Every configured step as (resource, step name), for the measured dispatch delay. */
function stepRefs(ctx: Context): Array<{ resource: string; stepName: string }> {
  const refs = new Map<string, { resource: string; stepName: string }>();
  for (const pipeline of Object.values(ctx.config.pipelines))
    for (const step of pipeline.steps) {
      const resource = step.kind === 'store' ? storeResource(pipeline, step) : step.provider!;
      refs.set(`${resource}\0${step.name}`, { resource, stepName: step.name });
    }
  return [...refs.values()];
}
