import { DEFAULT_CALL_MS, DEFAULT_STORE_CONCURRENCY, DEFAULT_STORE_MS } from '../config/defaults.ts';
import {
  defaultStepMs,
  keyIsUsable,
  storeConcurrencyOf,
  type Config,
  type ResolvedStep,
} from '../config/load.ts';
import { effectiveWeight } from '../policy/admission.ts';
import {
  arrivalShare,
  fairShareWork,
  serviceSeconds,
  type ProviderThroughput,
  type Sharer,
} from '../policy/estimate.ts';
import { policySettings } from '../policy/policy-input.ts';
import type { ForecastBasis, SubmitBasis } from '../store/forecasts.ts';
import { SUBMIT_UNSEEN_LIMIT } from '../store/forecasts.ts';
import type { TaskViewRow } from '../store/tasks.ts';

/**
 * Queue position and ETA on the request path: O(1) in the size of the queue.
 *
 * The scheduler leader forecasts the queue after its admission passes (src/scheduler/forecaster.ts,
 * the simulation in a worker thread) and writes each task's position and predicted start and
 * finish; reads take the task's row (`estimateOf`). A submit answers before any forecast has seen
 * its task, with first-come arithmetic from the last forecast's summary (`submitEstimate`); the
 * next pass refines it. Every answer says what it rests on (`eta_basis`, `forecast_at`,
 * `forecast_stale`): nothing falls back silently. See docs/api.md, "Queue position and ETA".
 */

/** A forecast older than this (the leader has not confirmed it since) is reported stale. */
export const FORECAST_STALE_MS = 15_000;

export type EtaBasis = ForecastBasis;

export interface TaskEstimate {
  /** Queued tasks predicted to start before this one (0: next to start, running, or ended). */
  position: number;
  /** Seconds until the task is expected to finish; null once it has (or when nothing is known). */
  eta_seconds: number | null;
  /** Predicted start (ISO); the real one once started; null once ended. */
  predicted_start_at: string | null;
  /** Predicted finish (ISO); null once ended. */
  predicted_finish_at: string | null;
  /**
   * `simulated`: the leader's forecast ran the queue under the policy and this task ended in it;
   * `extrapolated`: the forecast reached this task only with first-come arithmetic (its time or
   * step budget ran out first); `submit`: the first-come estimate the submit answered, no forecast
   * has covered the task yet; null once ended.
   */
  eta_basis: EtaBasis | null;
  /** The state the numbers were computed from (ISO); null once ended. */
  forecast_at: string | null;
  /** True when no leader has confirmed the forecast for FORECAST_STALE_MS: the numbers are old. */
  forecast_stale: boolean;
}

const ENDED: TaskEstimate = {
  position: 0,
  eta_seconds: null,
  predicted_start_at: null,
  predicted_finish_at: null,
  eta_basis: null,
  forecast_at: null,
  forecast_stale: false,
};

/** The estimate of a task as read with its forecast row (src/store/tasks.ts, getTaskView). */
export function estimateOf(row: TaskViewRow): TaskEstimate {
  if (row.state !== 'queued' && row.state !== 'running') return ENDED;
  if (row.fc_finish_at === null || row.fc_basis === null || row.fc_forecast_at === null) {
    // No estimate stored (a task submitted before this version): say so rather than guess.
    return { ...ENDED, predicted_start_at: row.started_at?.toISOString() ?? null, forecast_stale: true };
  }
  const checked =
    row.fc_basis === 'submit'
      ? row.fc_forecast_at.getTime()
      : (row.fc_checked_at ?? row.fc_forecast_at).getTime();
  const start = row.started_at ?? row.fc_start_at;
  return {
    position: row.state === 'running' ? 0 : (row.fc_position ?? 0),
    eta_seconds: Math.max(0, Math.round((row.fc_finish_at.getTime() - row.now_ms) / 1000)),
    predicted_start_at: start?.toISOString() ?? null,
    predicted_finish_at: row.fc_finish_at.toISOString(),
    eta_basis: row.fc_basis,
    forecast_at: row.fc_forecast_at.toISOString(),
    forecast_stale: row.now_ms - checked > FORECAST_STALE_MS,
  };
}

/** The key of a fresh task's own service time in the forecast summary. */
export function serviceKey(type: string, plan: string): string {
  return `${type}/${plan}`;
}

/**
 * A fresh task's own service time (ms) and the provider work it brings (summed call time, ms,
 * and the generate provider's concurrency), from the configured limits and the given step
 * durations (by `pipeline.step`; default: `defaultStepMs`). First-come arithmetic
 * (src/policy/estimate.ts).
 */
export function freshTaskCost(
  config: Config,
  type: string,
  images: number,
  stepMs: Record<string, number> = {},
): FreshTaskCost {
  const pipeline = config.pipelines[type];
  if (!pipeline) return { serviceMs: 0, workMs: 0, concurrency: 1, calls: 0, storeTailMs: 0, provider: '' };
  const ms = (step: ResolvedStep) => stepMs[`${pipeline.name}.${step.name}`] ?? defaultStepMs(config, step);
  let calls = 0;
  let serialCalls = 0;
  let workMs = 0;
  for (const step of pipeline.steps) {
    const n =
      step.kind === 'transform'
        ? step.calls
        : step.kind === 'generate'
          ? Math.ceil(images / step.batchSize)
          : 0;
    calls += n;
    workMs += n * (step.kind === 'store' ? 0 : ms(step));
    if (step.kind === 'transform') serialCalls += step.calls;
  }
  const generate = pipeline.steps.find((s) => s.kind === 'generate');
  const store = pipeline.steps.find((s) => s.kind === 'store');
  const provider = config.providers[generate?.provider ?? ''];
  const usable = provider?.keys.filter((k) => keyIsUsable(provider, k)) ?? [];
  const throughput: ProviderThroughput = {
    concurrency: Math.max(
      1,
      Math.min(
        provider?.concurrency ?? 1,
        usable.reduce((n, k) => n + k.concurrency, 0),
      ),
    ),
    rpm: Math.max(
      1,
      usable.reduce((n, k) => n + k.rpm, 0),
    ),
    meanCallMs: generate ? ms(generate) : DEFAULT_CALL_MS,
  };
  const work = {
    calls,
    serialCalls,
    storeUnits: images,
    storeConcurrency: store ? storeConcurrencyOf(store) : DEFAULT_STORE_CONCURRENCY,
    meanStoreMs: store ? ms(store) : DEFAULT_STORE_MS,
  };
  return {
    serviceMs: Math.round(serviceSeconds(work, throughput) * 1000),
    workMs,
    concurrency: throughput.concurrency,
    calls,
    storeTailMs: Math.round(serviceSeconds({ ...work, calls: 0, serialCalls: 0 }, throughput) * 1000),
    provider: generate?.provider ?? '',
  };
}

export interface FreshTaskCost {
  /** Its own service time alone on the provider (ms). */
  serviceMs: number;
  /** The provider work it brings: its calls' summed durations (ms). */
  workMs: number;
  /** Calls at once on its generate provider. */
  concurrency: number;
  /** Provider calls it makes. */
  calls: number;
  /** What storing adds after its last call (ms). */
  storeTailMs: number;
  /** Its generate step's provider. */
  provider: string;
}

/** Calls a task of `type` still makes for `images` images (its generate step's batches). */
function generateCalls(config: Config, type: string, images: number): number {
  const generate = config.pipelines[type]?.steps.find((s) => s.kind === 'generate');
  return generate ? Math.ceil(Math.max(0, images) / generate.batchSize) : 0;
}

/**
 * A submit's estimate, O(1) in the queue (its basis is bounded by the configuration, see
 * `readSubmitBasis`).
 *
 * Start: now, or, when the last forecast saw tasks waiting (held back by the running-task
 * limits), one start-spacing after the last of them.
 *
 * Finish: its own service time, or longer when it shares its provider: under weighted fair share
 * (src/policy/admission.ts) users, not tasks, split the provider's calls in proportion to their
 * effective weights, so the newcomer's work X (its calls, after its own user's earlier tasks) ends
 * once the provider has done X + Σ min(Wᵤ, X · wᵤ ÷ w) calls (`fairShareWork`), Wᵤ being what
 * each other user's running tasks and the queued tasks no forecast has seen yet (the rest of a
 * burst) have left. What a queued task the forecast saw will bring is in its start spacing.
 *
 * Tasks submitted after this one take capacity from it too. They are not known, so they are
 * expected at the rate seen: as many users arriving during its run as arrived within that long
 * before it, counted as the other users' queued tasks created since the last forecast (when that
 * forecast is no older than the answer without arrivals; the unseen tasks are then all within the
 * window, a lower bound on its arrivals). Each arrives at a uniform point of the newcomer's run and
 * does what fair share gives it from there (`arrivalShare`: half the newcomer's pace-equivalent
 * work for a user at least as big). A steady stream's older arrivals are in the forecast it
 * starts from; a burst's first task still cannot know the rest: the next forecast refines the
 * answer (docs/api.md, "Queue position and ETA").
 */
export function submitEstimate(
  config: Config,
  task: { id?: string; userId: string; type: string; plan: string; images: number },
  basis: SubmitBasis,
): { position: number; startAtMs: number; finishAtMs: number } {
  const own = freshTaskCost(config, task.type, task.images);
  const s = basis.summary;
  const serviceMs = s?.service_ms[serviceKey(task.type, task.plan)] ?? own.serviceMs;
  // The summary's service time is measured; call durations scale with it.
  const scale = own.serviceMs > 0 ? serviceMs / own.serviceMs : 1;
  const seenQueued = s?.queued ?? 0;
  const tailMs = s && seenQueued > 0 ? s.tail_start_at.getTime() + s.per_task_ms : basis.nowMs;
  const startMs = Math.max(basis.nowMs, tailMs);

  const active = basis.active.filter((t) => t.id !== task.id);
  const fairness = policySettings(config, 0, 0).fairness;
  let ownCalls = own.calls;
  const others = new Map<string, Sharer>();
  // Other users' queued tasks created since the last forecast: arrivals, per user.
  const arrived = new Map<string, Sharer>();
  for (const t of active) {
    if (generateProvider(config, t.type) !== own.provider) continue;
    const calls = generateCalls(config, t.type, t.remaining);
    if (t.user_id === task.userId) {
      // The user's own earlier tasks go first: their calls are in its share before its own.
      ownCalls += calls;
      continue;
    }
    for (const users of t.state === 'queued' ? [others, arrived] : [others]) {
      const u = users.get(t.user_id);
      // A user's weight is its head task's (running before queued, the order they were read in).
      if (u) u.work += calls;
      else users.set(t.user_id, { work: calls, weight: effectiveWeight(t.weight, t.remaining, fairness) });
    }
  }
  // Unseen queued tasks past the read's limit: counted as users with as much work as this one.
  const unread = active.filter((t) => t.state === 'queued').length >= SUBMIT_UNSEEN_LIMIT;
  const plan = config.plans[task.plan];
  const ownWeight = effectiveWeight(plan?.weight ?? 1, task.images, fairness);
  const sharers = [...others.values()];
  const unreadCount = unread ? Math.max(0, basis.queued - seenQueued - SUBMIT_UNSEEN_LIMIT) : 0;
  // n such users weigh as one with n times the work and n times the weight.
  const unreadGroup = { work: unreadCount * own.calls, weight: unreadCount * ownWeight };
  if (unreadCount > 0) sharers.push(unreadGroup);
  const callMs = own.calls > 0 ? (own.workMs / own.calls) * scale : 0;
  const mine = { work: ownCalls, weight: ownWeight };
  const msOf = (calls: number) => (calls * callMs) / own.concurrency + own.storeTailMs * scale;
  const presentMs = Math.max(serviceMs, msOf(fairShareWork(mine, sharers)));
  // Arrivals to come: as many as arrived within the horizon (those since the last forecast, when
  // it is no older than the answer without them), each over a uniform point of the newcomer's run.
  let arrivalCalls = 0;
  if (s && basis.nowMs - s.forecast_at.getTime() <= presentMs) {
    for (const u of arrived.values()) arrivalCalls += arrivalShare(mine, u);
    if (unreadCount > 0) arrivalCalls += arrivalShare(mine, unreadGroup);
  }
  const finishMs =
    arrivalCalls > 0 ? Math.max(presentMs, msOf(fairShareWork(mine, sharers) + arrivalCalls)) : presentMs;
  return {
    position: basis.queued,
    startAtMs: Math.round(startMs),
    finishAtMs: Math.round(startMs + finishMs),
  };
}

function generateProvider(config: Config, type: string): string | undefined {
  return config.pipelines[type]?.steps.find((s) => s.kind === 'generate')?.provider;
}
