import { DEFAULT_CALL_MS, DEFAULT_STORE_CONCURRENCY, DEFAULT_STORE_MS } from '../config/defaults.ts';
import {
  defaultStepMs,
  keyIsUsable,
  storeConcurrencyOf,
  type Config,
  type ResolvedStep,
} from '../config/load.ts';
import { serviceSeconds, type ProviderThroughput } from '../policy/estimate.ts';
import type { ForecastBasis, SubmitBasis } from '../store/forecasts.ts';
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
): { serviceMs: number; workMs: number; concurrency: number } {
  const pipeline = config.pipelines[type];
  if (!pipeline) return { serviceMs: 0, workMs: 0, concurrency: 1 };
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
  const serviceS = serviceSeconds(
    {
      calls,
      serialCalls,
      storeUnits: images,
      storeConcurrency: store ? storeConcurrencyOf(store) : DEFAULT_STORE_CONCURRENCY,
      meanStoreMs: store ? ms(store) : DEFAULT_STORE_MS,
    },
    throughput,
  );
  return { serviceMs: Math.round(serviceS * 1000), workMs, concurrency: throughput.concurrency };
}

/**
 * A submit's estimate, O(1) in the queue: first come, first served behind the queue as the last
 * forecast saw it. The new task starts one start-spacing after the last queued task the forecast
 * saw, plus one more for each queued task the forecast did not see yet (without a forecast, or of
 * an empty queue: each task ahead counts the provider work of one task like this one spread over
 * the provider's concurrency). Then it takes its own service time, or longer when it shares the
 * provider with the running tasks: under fair share each takes as much of the capacity as the
 * new task until the smaller has finished, so the new task's work W ends after
 * (Σ min(Wᵢ, W) + W) ÷ concurrency, each running task's work Wᵢ counted in proportion to the
 * images it has left.
 */
export function submitEstimate(
  config: Config,
  task: { type: string; plan: string; images: number },
  basis: SubmitBasis,
): { position: number; startAtMs: number; finishAtMs: number } {
  const ahead = basis.queued;
  const own = freshTaskCost(config, task.type, task.images);
  const s = basis.summary;
  const serviceMs = s?.service_ms[serviceKey(task.type, task.plan)] ?? own.serviceMs;
  // The summary's service time is measured; the provider work scales with it.
  const workMs = own.serviceMs > 0 ? (own.workMs * serviceMs) / own.serviceMs : own.workMs;
  const seenQueued = s?.queued ?? 0;
  const perTaskMs = s && seenQueued > 0 ? s.per_task_ms : workMs / own.concurrency;
  const tailMs = s && seenQueued > 0 ? s.tail_start_at.getTime() + perTaskMs : basis.nowMs;
  const startMs = Math.max(basis.nowMs, tailMs) + Math.max(0, ahead - seenQueued) * perTaskMs;
  const images = Math.max(1, task.images);
  const sharedUnits = basis.runningRemaining.reduce((n, r) => n + Math.min(Math.max(0, r), images), 0);
  const sharedMs = (workMs * (sharedUnits / images + 1)) / own.concurrency;
  return {
    position: ahead,
    startAtMs: Math.round(startMs),
    finishAtMs: Math.round(startMs + Math.max(serviceMs, sharedMs)),
  };
}
