import type { Config, ResolvedPipeline, ResolvedStep } from '../config/load.ts';
import { DEFAULT_CALL_MS, DEFAULT_STORE_CONCURRENCY, DEFAULT_STORE_MS } from '../config/defaults.ts';
import { defaultStepMs, keyIsUsable, storeConcurrencyOf } from '../config/load.ts';
import { serviceSeconds, waitSeconds, type ProviderThroughput } from '../policy/estimate.ts';
import { callStepJobs } from '../policy/lifecycle.ts';
import { Simulation } from './engine.ts';
import { SCENARIO_DEFAULTS, type Scenario } from './scenario.ts';
import type { SeedKey, SeedTask, SimSeed } from './seed.ts';
import type { SimTask } from './state.ts';

/**
 * The forecast of the live queue: queue positions and ETAs from the same policy model the
 * scheduler runs. From the current state (tasks queued and running with the work they have
 * left, jobs in flight and how long they have run, each key's request log and cool-down, the
 * providers' AIMD concurrency, the live worker slots) the planner's engine (`Simulation`,
 * seeded with that state) runs the real `decide()` forward on a virtual clock, every job taking
 * the mean duration measured for its step, and each task's predicted start and finish are read
 * off the run:
 *
 * - position = the queued tasks predicted to start before this one (0 once it runs);
 * - ETA = predicted finish − now.
 *
 * The run is bounded (`maxSteps` instants): tasks it does not finish get first-come-first-served
 * arithmetic (src/policy/estimate.ts) from the state the run reached, so a huge queue costs a
 * bounded amount and its tail gets the old estimate. Pure: no I/O, no clock reads.
 */

/** A job admitted or running when the state was read. */
export interface ForecastFlight {
  stepIndex: number;
  firstIndex: number;
  count: number;
  attempts: number;
  keyId?: string | undefined;
  admittedAtMs: number;
  /** Undefined: admitted, not claimed by a worker yet. */
  startedAtMs?: number | undefined;
}

export interface ForecastTask extends Omit<SeedTask, 'inFlight'> {
  inFlight?: ForecastFlight[] | undefined;
}

/** The live state, times in epoch ms on one clock (the database's). */
export interface ForecastState {
  nowMs: number;
  workerSlots: number;
  tasks: ForecastTask[];
  keys: SeedKey[];
  effectiveConcurrency: Record<string, number>;
  lastServedAtMs: Record<string, number>;
}

export interface Durations {
  /** Mean duration of a job of each step, by `pipeline.step` (ms). */
  stepMs: Record<string, number>;
  /**
   * Standard deviation of those durations (ms; absent: fixed). The run draws each job's
   * duration uniformly with that mean and deviation, from a fixed seed: real jobs do not all end
   * at the same instant, and fair share plays out differently when they do.
   */
  stepSdMs?: Record<string, number> | undefined;
  /** Mean delay from admission to the call starting, scheduler reaction included (ms). */
  dispatchMs: number;
}

export interface TaskForecast {
  id: string;
  /** Predicted start (epoch ms); undefined when it had started before the state was read. */
  startAtMs: number | undefined;
  /** Predicted end (epoch ms). */
  finishAtMs: number;
  /** False when the run stopped before this task ended: its finish is the FCFS fallback. */
  simulated: boolean;
  /** True when it ends without ever starting (canceled at its deadline). */
  neverStarts?: boolean | undefined;
}

export interface ForecastOptions {
  /** Stop as soon as this task has ended (the answer to a submit needs nothing more). */
  focus?: string | undefined;
  /** Most instants (event times) simulated; default 20 000. */
  maxSteps?: number | undefined;
  /** Seed of the run's random durations (default 1). */
  seed?: number | undefined;
  /**
   * Asked after every simulated instant: true ends the run there, like `maxSteps` (the caller's
   * time budget; the tasks not finished get the first-come arithmetic, marked not simulated).
   */
  shouldStop?: (() => boolean) | undefined;
}

export { defaultStepMs };

const DEFAULT_MAX_STEPS = 20_000;
/** A job running past its mean is expected to end soon: this share of the mean from now. */
const OVERRUN_SHARE = 0.05;

export function stepKey(pipeline: ResolvedPipeline, step: ResolvedStep): string {
  return `${pipeline.name}.${step.name}`;
}

/** Spread assumed for a step with too few measurements: this share of its mean, as a deviation. */
const DEFAULT_SD_SHARE = 0.1;

/**
 * The durations for every configured step: measured where given (`measured[key]`, by
 * `pipeline.step`), else the defaults; deviations likewise, else 10 % of the mean.
 */
export function durationsFor(
  config: Config,
  measured: Record<string, { meanMs?: number | undefined; sdMs?: number | undefined } | undefined>,
  dispatchMs: number,
): Durations {
  const stepMs: Record<string, number> = {};
  const stepSdMs: Record<string, number> = {};
  for (const pipeline of Object.values(config.pipelines))
    for (const step of pipeline.steps) {
      const key = stepKey(pipeline, step);
      const m = measured[key];
      const mean = Math.max(1, Math.round(m?.meanMs ?? defaultStepMs(config, step)));
      stepMs[key] = mean;
      stepSdMs[key] = Math.round(m?.sdMs ?? mean * DEFAULT_SD_SHARE);
    }
  return { stepMs, stepSdMs, dispatchMs: Math.max(0, Math.round(dispatchMs)) };
}

/** The result of one forecast run: positions and ETAs for every task it knows. */
export class Forecast {
  /** The state's instant (epoch ms). */
  readonly nowMs: number;
  /** How far the run got (epoch ms); tasks ending later got the fallback. */
  readonly horizonMs: number;
  /** True when every task ended inside the run. */
  readonly complete: boolean;
  /** Instants the run simulated (its cost). */
  readonly steps: number;
  private readonly byId = new Map<string, TaskForecast>();
  /** Tasks in the order the run started them, with when. */
  private readonly starts: Array<{ id: string; atMs: number }> = [];
  /** Tasks still queued when the run stopped, in creation order. */
  private readonly unstartedIndex = new Map<string, number>();

  constructor(
    nowMs: number,
    horizonMs: number,
    complete: boolean,
    tasks: TaskForecast[],
    starts: Array<{ id: string; atMs: number }>,
    unstarted: string[],
    steps = 0,
  ) {
    this.nowMs = nowMs;
    this.horizonMs = horizonMs;
    this.complete = complete;
    this.steps = steps;
    for (const t of tasks) this.byId.set(t.id, t);
    this.starts.push(...starts);
    unstarted.forEach((id, i) => this.unstartedIndex.set(id, i));
  }

  get(id: string): TaskForecast | undefined {
    return this.byId.get(id);
  }

  /**
   * Several runs of one state with different random durations, as one forecast: each task's
   * start and finish are the means over the runs (the expected ones, not one draw's), and the
   * start order follows the mean starts.
   */
  static average(forecasts: Forecast[]): Forecast {
    const first = forecasts[0]!;
    if (forecasts.length === 1) return first;
    const mean = (xs: number[]) => Math.round(xs.reduce((a, b) => a + b, 0) / xs.length);
    const tasks: TaskForecast[] = [];
    for (const t of first.byId.values()) {
      const all = forecasts.map((f) => f.byId.get(t.id));
      if (all.some((x) => x === undefined)) {
        tasks.push(t);
        continue;
      }
      const starts = all.map((x) => x!.startAtMs);
      tasks.push({
        id: t.id,
        startAtMs: starts.every((x) => x !== undefined) ? mean(starts as number[]) : t.startAtMs,
        finishAtMs: mean(all.map((x) => x!.finishAtMs)),
        simulated: all.every((x) => x!.simulated),
        ...(t.neverStarts ? { neverStarts: true } : {}),
      });
    }
    const merged = new Map(tasks.map((t) => [t.id, t]));
    const starts = first.starts
      .map((s, i) => ({ id: s.id, atMs: merged.get(s.id)?.startAtMs ?? s.atMs, i }))
      .sort((a, b) => a.atMs - b.atMs || a.i - b.i)
      .map(({ id, atMs }) => ({ id, atMs }));
    const unstarted = [...first.unstartedIndex.entries()].sort((a, b) => a[1] - b[1]).map(([id]) => id);
    return new Forecast(
      first.nowMs,
      Math.min(...forecasts.map((f) => f.horizonMs)),
      forecasts.every((f) => f.complete),
      tasks,
      starts,
      unstarted,
      forecasts.reduce((n, f) => n + f.steps, 0),
    );
  }

  get size(): number {
    return this.byId.size;
  }

  /**
   * Queued tasks predicted to start before this one, as seen at `atMs` (epoch ms, same clock):
   * the tasks predicted to start after `atMs` (a task predicted to start by then counts as
   * running: the scheduler admits what it can at once) and strictly before this one; tasks
   * starting at the same instant are not ahead of each other. 0 once this one has started, or is
   * predicted to have by `atMs`. Tasks the run did not start come after every task it did, in
   * creation order. A task that never starts (its deadline passes first) counts the tasks that
   * start before it is canceled.
   */
  position(id: string, atMs: number): number {
    const t = this.byId.get(id);
    if (!t) return 0;
    const from = this.firstStartAtOrAfter(atMs, true);
    if (t.startAtMs !== undefined)
      return t.startAtMs <= atMs ? 0 : Math.max(0, this.firstStartAtOrAfter(t.startAtMs) - from);
    const unstarted = this.unstartedIndex.get(id);
    if (unstarted !== undefined) return this.starts.length - from + unstarted;
    // Canceled at its deadline without starting: the tasks that start while it waits.
    return t.neverStarts ? Math.max(0, this.firstStartAtOrAfter(t.finishAtMs) - from) : 0;
  }

  /** Whole seconds from `atMs` to the predicted end (never negative); undefined for an unknown task. */
  etaSeconds(id: string, atMs: number): number | undefined {
    const t = this.byId.get(id);
    return t ? Math.max(0, Math.round((t.finishAtMs - atMs) / 1000)) : undefined;
  }

  /** Index of the first start at or after `atMs` (`after`: strictly after); starts are in time order. */
  private firstStartAtOrAfter(atMs: number, after = false): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid]!.atMs < atMs || (after && this.starts[mid]!.atMs === atMs)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function forecastScenario(config: Config, durations: Durations, seed = 1): Scenario {
  const latency: Scenario['latency'] = {};
  for (const [key, ms] of Object.entries(durations.stepMs)) {
    const half = Math.min(ms, Math.sqrt(3) * (durations.stepSdMs?.[key] ?? 0));
    latency[key] = half > 0 ? { dist: 'uniform', minMs: ms - half, maxMs: ms + half } : { dist: 'fixed', ms };
  }
  return {
    name: 'forecast',
    seed,
    arrivals: [],
    latency,
    errors: {},
    providerLimits: {},
    rateLimitLatencyMs: SCENARIO_DEFAULTS.rateLimitLatencyMs,
    workers: SCENARIO_DEFAULTS.workers,
    dispatchMs: durations.dispatchMs,
    recordMs: SCENARIO_DEFAULTS.recordMs,
    config: {},
    maxSimulatedHours: Math.max(SCENARIO_DEFAULTS.maxSimulatedHours, config.limits.maxQueuedTasks / 10),
  };
}

/** The seed on the simulation's clock: ms since the state was read. */
export function seedOf(config: Config, state: ForecastState, durations: Durations): SimSeed {
  const t0 = state.nowMs;
  const rel = (t: number) => Math.round(t - t0);
  const tasks: SeedTask[] = [];
  for (const t of state.tasks) {
    const pipeline = config.pipelines[t.type];
    if (!pipeline) continue;
    // Fields copied one by one: spreading thousands of these objects is ten times slower.
    tasks.push({
      id: t.id,
      userId: t.userId,
      plan: t.plan,
      type: t.type,
      weight: t.weight,
      imagesTotal: t.imagesTotal,
      done: t.done,
      failed: t.failed,
      state: t.state,
      canceled: t.canceled,
      createdAtMs: rel(t.createdAtMs),
      deadlineAtMs: t.deadlineAtMs === undefined ? undefined : rel(t.deadlineAtMs),
      startedAtMs: t.startedAtMs === undefined ? undefined : rel(t.startedAtMs),
      arriveAtMs: t.arriveAtMs === undefined ? undefined : Math.max(0, rel(t.arriveAtMs)),
      queued: t.queued?.map((j) => ({
        stepIndex: j.stepIndex,
        firstIndex: j.firstIndex,
        count: j.count,
        attempts: j.attempts,
        readyAtMs: rel(j.readyAtMs),
      })),
      inFlight: t.inFlight?.flatMap((f) => {
        const step = pipeline.steps[f.stepIndex];
        if (!step) return [];
        const mean = durations.stepMs[stepKey(pipeline, step)] ?? defaultStepMs(config, step);
        const started = f.startedAtMs ?? Math.max(f.admittedAtMs + durations.dispatchMs, t0);
        let ends = started + mean;
        if (ends <= t0) ends = t0 + Math.max(1, mean * OVERRUN_SHARE);
        return [
          {
            stepIndex: f.stepIndex,
            firstIndex: f.firstIndex,
            count: f.count,
            attempts: f.attempts,
            keyId: f.keyId,
            startedAtMs: rel(f.startedAtMs ?? f.admittedAtMs),
            endsAtMs: rel(ends),
          },
        ];
      }),
    });
  }
  return {
    nowMs: 0,
    workerSlots: state.workerSlots,
    tasks,
    // Every configured key, usable as the server sees it (the planner counts keys whose secret
    // is missing here; the live server cannot use them).
    keys: Object.values(config.providers).flatMap((p) =>
      p.keys.map((key) => {
        const k = state.keys.find((x) => x.provider === p.name && x.id === key.id);
        return {
          provider: p.name,
          id: key.id,
          startsMs: (k?.startsMs ?? []).map(rel),
          cooldownUntilMs: rel(k?.cooldownUntilMs ?? 0),
          usable: keyIsUsable(p, key),
        };
      }),
    ),
    effectiveConcurrency: state.effectiveConcurrency,
    lastServedAtMs: Object.fromEntries(Object.entries(state.lastServedAtMs).map(([u, t]) => [u, rel(t)])),
  };
}

/** Runs the forecast: the seeded simulation, then the fallback for what it did not finish. */
export function forecast(
  config: Config,
  state: ForecastState,
  durations: Durations,
  options: ForecastOptions = {},
): Forecast {
  const t0 = state.nowMs;
  const starts: Array<{ id: string; atMs: number }> = [];
  const seed = seedOf(config, state, durations);
  const focus = options.focus;
  const shouldStop = options.shouldStop;
  let focusTask: SimTask | undefined;
  const sim = new Simulation(config, forecastScenario(config, durations, options.seed), {
    seed,
    maxSteps: options.maxSteps ?? DEFAULT_MAX_STEPS,
    onDecision: (_input, decision, s) => {
      for (const a of decision.admissions) if (a.startsTask) starts.push({ id: a.taskId, atMs: s.now });
    },
    ...(focus !== undefined || shouldStop !== undefined
      ? {
          stopWhen: (s: Simulation) => {
            if (shouldStop?.()) return true;
            if (focus === undefined) return false;
            focusTask ??= s.task(focus);
            return focusTask !== undefined && focusTask.state !== 'queued' && focusTask.state !== 'running';
          },
        }
      : {}),
  });
  const run = sim.run();
  const horizon = sim.now;
  // A task's start is its admission (the server marks it running then), not the call's start.
  const startedAt = new Map(starts.map((s) => [s.id, t0 + s.atMs]));
  const out: TaskForecast[] = [];
  for (const r of run.tasks) {
    if (r.finishedMs === undefined) continue;
    out.push({
      id: r.id,
      startAtMs: startedAt.get(r.id),
      finishAtMs: t0 + r.finishedMs,
      simulated: true,
      ...(r.startedMs === undefined ? { neverStarts: true } : {}),
    });
  }
  const unstarted: string[] = [];
  for (const f of fallback(config, state, durations, sim.openTasks())) {
    if (f.task.state === 'queued') unstarted.push(f.task.id);
    out.push({
      id: f.task.id,
      startAtMs: startedAt.get(f.task.id),
      finishAtMs: t0 + horizon + f.etaMs,
      simulated: false,
    });
  }
  return new Forecast(
    t0,
    t0 + horizon,
    !run.stoppedEarly,
    out,
    starts.map((s) => ({ id: s.id, atMs: t0 + s.atMs })),
    unstarted,
    run.decisions,
  );
}

/** The work a task has left, as the first-come-first-served arithmetic counts it. */
export interface WorkLeft {
  /** Per provider: calls left and the sum of their mean durations. */
  calls: Map<string, { calls: number; workMs: number }>;
  /** Transform steps still ahead of the fan-out: they run one after another. */
  serialCalls: number;
  storeUnits: number;
}

/**
 * The calls of a task from the step after `lastCreated` on (those steps have no jobs yet), plus
 * the given queued call jobs.
 */
function workLeft(
  pipeline: ResolvedPipeline,
  durations: Durations,
  queuedCalls: Iterable<ResolvedStep>,
  lastCreated: number,
  images: number,
  canceled: boolean,
): WorkLeft {
  const calls = new Map<string, { calls: number; workMs: number }>();
  const add = (step: ResolvedStep, n: number) => {
    const provider = step.provider ?? '';
    const c = calls.get(provider) ?? { calls: 0, workMs: 0 };
    c.calls += n;
    c.workMs += n * (durations.stepMs[stepKey(pipeline, step)] ?? DEFAULT_CALL_MS);
    calls.set(provider, c);
  };
  const serial = new Set<number>();
  for (const step of queuedCalls) {
    add(step, 1);
    if (step.kind === 'transform') serial.add(step.index);
  }
  if (lastCreated >= 0 && !canceled) {
    for (const step of pipeline.steps.slice(lastCreated + 1)) {
      if (step.kind === 'transform') {
        add(step, step.calls);
        serial.add(step.index);
      } else if (step.kind === 'generate') add(step, Math.ceil(images / step.batchSize));
    }
  }
  return { calls, serialCalls: serial.size, storeUnits: canceled ? 0 : images };
}

/** The work a simulated task has left: its queued calls, and the calls of steps not created yet. */
function workOfSimTask(task: SimTask, durations: Durations): WorkLeft {
  let lastCreated = -1;
  const queued: ResolvedStep[] = [];
  for (const j of task.queued) {
    if (j.kind === 'store') continue;
    queued.push(j.step);
    lastCreated = Math.max(lastCreated, j.step.index);
  }
  for (const [index, left] of task.transformLeft) if (left > 0) lastCreated = Math.max(lastCreated, index);
  const images = Math.max(0, task.imagesTotal - task.done - task.failed);
  return workLeft(task.pipeline, durations, queued, lastCreated, images, task.canceled);
}

/** The work a task of the live state has left (a queued one without job rows: its whole pipeline). */
export function workOfStateTask(config: Config, t: ForecastTask, durations: Durations): WorkLeft | undefined {
  const pipeline = config.pipelines[t.type];
  if (!pipeline) return undefined;
  const images = Math.max(0, t.imagesTotal - t.done - t.failed);
  const canceled = t.canceled ?? false;
  if (t.queued === undefined && t.inFlight === undefined) {
    // Exactly its first step's jobs, as the lifecycle fans them out.
    const first = pipeline.steps[0]!;
    const n = first.kind === 'store' ? 0 : callStepJobs(first, images, 0).length;
    return workLeft(
      pipeline,
      durations,
      Array.from({ length: n }, () => first),
      0,
      images,
      canceled,
    );
  }
  let lastCreated = -1;
  const queued: ResolvedStep[] = [];
  for (const j of t.queued ?? []) {
    const step = pipeline.steps[j.stepIndex];
    if (!step || step.kind === 'store') continue;
    queued.push(step);
    lastCreated = Math.max(lastCreated, step.index);
  }
  for (const f of t.inFlight ?? []) {
    const step = pipeline.steps[f.stepIndex];
    if (step && step.kind !== 'store') lastCreated = Math.max(lastCreated, step.index);
  }
  return workLeft(pipeline, durations, queued, lastCreated, images, canceled);
}

/**
 * First-come-first-served arithmetic (src/policy/estimate.ts), the fallback beyond the
 * simulated horizon and for huge queues: a task waits for the provider work of every task put
 * in the line before it, divided by the provider's throughput, then takes its own service time.
 */
export class FcfsLine {
  private readonly throughputs = new Map<string, ProviderThroughput>();
  private readonly ahead = new Map<string, { calls: number; workMs: number }>();
  private readonly config: Config;
  private readonly durations: Durations;
  /** Tasks in the line not started yet. */
  queued = 0;

  constructor(config: Config, effectiveConcurrency: Record<string, number>, durations: Durations) {
    this.config = config;
    this.durations = durations;
    for (const p of Object.values(config.providers)) {
      const usable = p.keys.filter((k) => keyIsUsable(p, k));
      const effective = Math.min(p.concurrency, effectiveConcurrency[p.name] ?? p.concurrency);
      this.throughputs.set(p.name, {
        concurrency: Math.max(
          1,
          Math.min(
            Math.floor(effective),
            usable.reduce((n, k) => n + k.concurrency, 0),
          ),
        ),
        rpm: Math.max(
          1,
          usable.reduce((n, k) => n + k.rpm, 0),
        ),
        meanCallMs: DEFAULT_CALL_MS,
      });
    }
  }

  /** Ms until a task of this type with this work left would end behind the line. */
  etaMs(type: string, work: WorkLeft): number {
    const pipeline = this.config.pipelines[type];
    if (!pipeline) return 0;
    let waitS = 0;
    for (const [provider, load] of this.ahead) {
      const p = this.throughputs.get(provider);
      if (p && work.calls.has(provider)) waitS = Math.max(waitS, waitSeconds(load, p));
    }
    const generate = pipeline.steps.find((s) => s.kind === 'generate');
    const store = pipeline.steps.find((s) => s.kind === 'store');
    const p = generate ? this.throughputs.get(generate.provider ?? '') : undefined;
    let serviceS = 0;
    if (generate && p) {
      serviceS = serviceSeconds(
        {
          calls: work.calls.get(generate.provider ?? '')?.calls ?? 0,
          serialCalls: work.serialCalls,
          storeUnits: work.storeUnits,
          storeConcurrency: store ? storeConcurrencyOf(store) : DEFAULT_STORE_CONCURRENCY,
          meanStoreMs: store
            ? (this.durations.stepMs[stepKey(pipeline, store)] ?? DEFAULT_STORE_MS)
            : DEFAULT_STORE_MS,
        },
        { ...p, meanCallMs: this.durations.stepMs[stepKey(pipeline, generate)] ?? DEFAULT_CALL_MS },
      );
    }
    return Math.round((waitS + serviceS) * 1000);
  }

  /** Puts a task at the end of the line. */
  push(work: WorkLeft, queued: boolean): void {
    for (const [provider, load] of work.calls) {
      const a = this.ahead.get(provider) ?? { calls: 0, workMs: 0 };
      a.calls += load.calls;
      a.workMs += load.workMs;
      this.ahead.set(provider, a);
    }
    if (queued) this.queued++;
  }
}

/** The fallback for the tasks a run did not finish: FCFS from the state the run reached. */
function fallback(
  config: Config,
  state: ForecastState,
  durations: Durations,
  open: readonly SimTask[],
): Array<{ task: SimTask; etaMs: number }> {
  const line = new FcfsLine(config, state.effectiveConcurrency, durations);
  const sorted = [...open].sort(
    (a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
  );
  return sorted.map((task) => {
    const work = workOfSimTask(task, durations);
    const etaMs = line.etaMs(task.type, work);
    line.push(work, task.state === 'queued');
    return { task, etaMs };
  });
}
