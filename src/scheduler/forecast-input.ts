import { rpmWindowMs, workerStaleMs, type Config } from '../config/load.ts';
import { storeResource } from '../policy/lifecycle.ts';
import {
  durationsFor,
  stepKey,
  type Durations,
  type ForecastState,
  type ForecastTask,
} from '../sim/forecast.ts';
import type { Queryable } from '../store/db.ts';
import { meanStepDurations, readQueueSnapshot, slotIdleMs, type QueueSnapshot } from '../store/stats.ts';

/**
 * What the leader's forecast starts from: the queue as the database holds it (at most
 * `maxTasks` active tasks, oldest first) and the job durations measured per step. Read on the
 * scheduler's event loop (a few statements); turned into the simulation's state and run in the
 * forecast worker thread (src/scheduler/forecaster-worker.ts).
 */
export interface ForecastInput {
  snapshot: QueueSnapshot;
  durations: Durations;
}

export async function readForecastInput(
  q: Queryable,
  config: Config,
  maxTasks: number,
): Promise<ForecastInput> {
  const snapshot = await readQueueSnapshot(q, {
    maxTasks,
    windowMs: rpmWindowMs(config),
    workerStaleMs: workerStaleMs(config),
  });
  return { snapshot, durations: await measuredDurations(q, config) };
}

/**
 * Mean job durations per step, measured (else the defaults), and the simulation's dispatch delay.
 * The simulation frees a call's slot at its answer, admits the next call there and starts it
 * `dispatchMs` later, so its dispatch delay is what the server measures as the time from a call's
 * answer to the next waiting call's start (store/stats.ts slotIdleMs: wake-up, pass, claim,
 * inputs), as the planner bench calibrates it; before any call was measured so, the mean
 * admission → start delay. Admission is event-driven: no share of the fallback poll is added.
 */
async function measuredDurations(q: Queryable, config: Config): Promise<Durations> {
  const steps = Object.values(config.pipelines).flatMap((pipeline) =>
    pipeline.steps.map((step) => ({
      key: stepKey(pipeline, step),
      resource: step.kind === 'store' ? storeResource(pipeline, step) : step.provider!,
      stepName: step.name,
    })),
  );
  const unique = [...new Map(steps.map((s) => [`${s.resource}\0${s.stepName}`, s])).values()];
  const rows = await meanStepDurations(q, unique);
  const byRef = new Map(rows.map((r) => [`${r.resource}\0${r.stepName}`, r]));
  const measured: Record<string, { meanMs?: number | undefined; sdMs?: number | undefined }> = {};
  let dispatchSum = 0;
  let dispatchN = 0;
  for (const s of steps) {
    const r = byRef.get(`${s.resource}\0${s.stepName}`);
    // A deviation needs a few samples; before that the default spread is the better guess.
    measured[s.key] = { meanMs: r?.meanMs, sdMs: r && r.samples >= 5 ? r.sdMs : undefined };
    if (r?.dispatchMs !== undefined && r.samples > 0) {
      dispatchSum += r.dispatchMs * r.samples;
      dispatchN += r.samples;
    }
  }
  const claimMs = dispatchN > 0 ? dispatchSum / dispatchN : 0;
  const providers = [...new Set(steps.filter((s) => s.resource in config.providers).map((s) => s.resource))];
  let idleSum = 0;
  let idleN = 0;
  for (const r of await slotIdleMs(q, providers)) {
    if (r.medianMs === undefined || r.samples <= 0) continue;
    idleSum += r.medianMs * r.samples;
    idleN += r.samples;
  }
  return durationsFor(config, measured, idleN > 0 ? idleSum / idleN : claimMs);
}

/** The snapshot as the forecast's state (pure). */
export function stateOf(config: Config, snap: QueueSnapshot): ForecastState {
  const jobsOf = new Map<string, QueueSnapshot['jobs']>();
  for (const j of snap.jobs) {
    let list = jobsOf.get(j.task_id);
    if (!list) jobsOf.set(j.task_id, (list = []));
    list.push(j);
  }
  const lastEnd = new Map(snap.lastJobEnd.map((r) => [r.task_id, r.ms]));
  const lastServedAtMs: Record<string, number> = {};
  const served = (user: string, at: number) => {
    lastServedAtMs[user] = Math.max(lastServedAtMs[user] ?? at, at);
  };
  const tasks: ForecastTask[] = snap.tasks.map((t) => {
    const base: ForecastTask = {
      id: t.id,
      userId: t.user_id,
      plan: t.plan,
      type: t.type,
      weight: t.weight,
      imagesTotal: t.images_total,
      done: t.images_done,
      failed: t.images_failed,
      createdAtMs: t.created_ms,
      deadlineAtMs: t.deadline_ms ?? undefined,
      state: t.state,
      startedAtMs: t.started_ms ?? undefined,
      canceled: t.cancel_requested,
    };
    if (t.state !== 'running') return base;
    const jobs = jobsOf.get(t.id) ?? [];
    const ended = lastEnd.get(t.id);
    if (ended !== undefined) served(t.user_id, ended);
    const inFlight = jobs.filter((j) => j.state !== 'queued');
    if (inFlight.length > 0) served(t.user_id, snap.nowMs);
    return {
      ...base,
      queued: jobs
        .filter((j) => j.state === 'queued')
        .map((j) => ({
          stepIndex: j.step_index,
          firstIndex: j.first_index,
          count: j.count,
          attempts: j.attempts,
          readyAtMs: j.ready_ms,
        })),
      inFlight: inFlight.map((j) => ({
        stepIndex: j.step_index,
        firstIndex: j.first_index,
        count: j.count,
        attempts: j.attempts,
        keyId: j.key_id ?? undefined,
        admittedAtMs: j.admitted_ms ?? snap.nowMs,
        startedAtMs: j.state === 'running' ? (j.started_ms ?? undefined) : undefined,
      })),
    };
  });
  const keys = new Map<
    string,
    { provider: string; id: string; startsMs: number[]; cooldownUntilMs: number }
  >();
  const keyOf = (provider: string, id: string) => {
    const k = `${provider}\0${id}`;
    let key = keys.get(k);
    if (!key) keys.set(k, (key = { provider, id, startsMs: [], cooldownUntilMs: 0 }));
    return key;
  };
  for (const r of snap.keyRequests) keyOf(r.provider, r.key_id).startsMs.push(r.t_ms);
  const effectiveConcurrency: Record<string, number> = {};
  for (const s of snap.providerState) {
    if (s.key_id === '') {
      if (s.effective_concurrency !== null) effectiveConcurrency[s.provider] = s.effective_concurrency;
    } else if (s.cooldown_ms !== null) keyOf(s.provider, s.key_id).cooldownUntilMs = s.cooldown_ms;
  }
  return {
    nowMs: snap.nowMs,
    // No live worker yet (one is starting, or only API and scheduler processes run so far):
    // assume one worker of the configured size rather than a queue that never moves.
    workerSlots: snap.workerSlots > 0 ? snap.workerSlots : config.worker.concurrency,
    tasks,
    keys: [...keys.values()],
    effectiveConcurrency,
    lastServedAtMs,
  };
}
