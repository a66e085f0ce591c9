import { keyIsUsable, type Config, type ResolvedPipeline } from '../config/load.ts';
import { estimateEtaSeconds, type ProviderThroughput, type TaskWork } from '../policy/estimate.ts';
import {
  FcfsLine,
  Forecast,
  durationsFor,
  forecast,
  stepKey,
  workOfStateTask,
  type Durations,
  type ForecastState,
  type ForecastTask,
} from '../sim/forecast.ts';
import type { Queryable } from '../store/db.ts';
import { providerStates } from '../store/provider-state.ts';
import {
  meanJobMs,
  meanStepDurations,
  readQueueSnapshot,
  workAhead,
  type QueueSnapshot,
} from '../store/stats.ts';
import type { TaskRow } from '../store/tasks.ts';
import { storeResource } from './plan-jobs.ts';

export interface TaskEstimate {
  /** Queued tasks predicted to start before this one (0: next to start, or already running). */
  position: number;
  /** Seconds until the task is expected to finish; null once it has. */
  eta_seconds: number | null;
}

/**
 * Queue position and ETA of a task, from the forecast (src/sim/forecast.ts): the live queue
 * simulated forward with the scheduler's own decide(). See docs/api.md, "Queue position and ETA".
 *
 * Cost control, per process (one cache per configuration):
 * - the queue is read from the database at most once per BASE_MAX_AGE_MS (the "base"); tasks
 *   this process sees that the base does not hold yet (its submits, or tasks another process
 *   created since) join the forecast as arrivals at their creation time;
 * - a submit's answer comes from a run that stops as soon as the new task ends in it; reads
 *   share one run of the base and its arrivals, redone when either changes;
 * - a run is bounded (MAX_STEPS instants); tasks it does not finish get first-come-first-served
 *   arithmetic from where it stopped (src/sim/forecast.ts);
 * - simulating may use at most SIM_SHARE of the process's time (a budget refilled as time
 *   passes, SIM_BURST_MS at most): a submit that finds it spent, or a queue of more than
 *   SIMULATE_MAX_TASKS active tasks, gets the first-come-first-served answer in memory, and
 *   reads get a run of zero steps (the same arithmetic) until the budget refills;
 * - when one run is cheap, SAMPLES runs with different random durations are averaged;
 * - beyond SNAPSHOT_MAX_TASKS active tasks the newest are not read: they get the database
 *   estimate the server gave before the forecast existed (fcfsEstimate).
 */
const BASE_MAX_AGE_MS = 1000;
const SNAPSHOT_MAX_TASKS = 5000;
const SIMULATE_MAX_TASKS = 500;
const RUN_MAX_STEPS = 5000;
const SUBMIT_MAX_STEPS = 2000;
const SAMPLES = 3;
/** A run that took longer than this (ms) is not repeated for the average. */
const SAMPLE_MAX_MS = 5;
const SIM_SHARE = 0.15;
const SIM_BURST_MS = 200;
/** A base older than this forgets the arrivals it should already hold (a rolled-back submit). */
const ARRIVAL_KEEP_MS = 10_000;

interface Base {
  /** Date.now() when read, and the database clock at that instant. */
  readAtLocalMs: number;
  state: ForecastState;
  durations: Durations;
  ids: Set<string>;
  /** More active tasks than the snapshot holds. */
  truncated: boolean;
  /** FCFS line of the base's tasks (built on first use). */
  line?: FcfsLine;
}

interface Cache {
  base?: Base;
  loading?: { q: Queryable; promise: Promise<Base> };
  /** Tasks seen by this process since the base was read, by id, in arrival order. */
  arrivals: Map<string, ForecastTask>;
  /** The shared run of base + arrivals, and what it was computed from. */
  run?: { base: Base; arrivals: number; forecast: Forecast };
  /** Arrivals added to the base's FCFS line. */
  lined: Set<string>;
  /** Simulation time left (ms) and when it was last refilled (performance.now()). */
  budgetMs: number;
  budgetAt: number;
}

const caches = new WeakMap<Config, Cache>();

function cacheFor(config: Config): Cache {
  let cache = caches.get(config);
  if (!cache) {
    cache = { arrivals: new Map(), lined: new Set(), budgetMs: SIM_BURST_MS, budgetAt: performance.now() };
    caches.set(config, cache);
  }
  return cache;
}

function budget(cache: Cache): number {
  const now = performance.now();
  cache.budgetMs = Math.min(SIM_BURST_MS, cache.budgetMs + (now - cache.budgetAt) * SIM_SHARE);
  cache.budgetAt = now;
  return cache.budgetMs;
}

export async function estimateTask(q: Queryable, config: Config, task: TaskRow): Promise<TaskEstimate> {
  if (task.state !== 'queued' && task.state !== 'running') return { position: 0, eta_seconds: null };
  let estimate: TaskEstimate | undefined;
  try {
    estimate = await forecastEstimate(q, config, task);
  } catch {
    // A forecast must never fail a submit or a read: the arithmetic answers instead.
  }
  return estimate ?? fcfsEstimate(q, config, task);
}

/** The forecast's answer, or undefined when the task is beyond what it covers. */
async function forecastEstimate(
  q: Queryable,
  config: Config,
  task: TaskRow,
): Promise<TaskEstimate | undefined> {
  const cache = cacheFor(config);
  const base = await baseFor(q, config, cache);
  const nowMs = base.state.nowMs + (Date.now() - base.readAtLocalMs);
  if (base.ids.has(task.id) || cache.arrivals.has(task.id))
    return answer(sharedRun(config, cache, base), task.id, nowMs);
  // New to this process: a submit, or a task another process created since the base was read.
  if (base.truncated) return undefined;
  const arrival = arrivalOf(task);
  cache.arrivals.set(task.id, arrival);
  if (base.state.tasks.length + cache.arrivals.size > SIMULATE_MAX_TASKS || budget(cache) <= 0) {
    const line = lineFor(config, cache, base);
    const work = workOfStateTask(config, arrival, base.durations);
    if (!work) return undefined;
    const etaMs = line.etaMs(task.type, work);
    const position = line.queued;
    line.push(work, true);
    cache.lined.add(task.id);
    return { position, eta_seconds: Math.max(0, Math.round((base.state.nowMs + etaMs - nowMs) / 1000)) };
  }
  const f = simulate(config, cache, withArrivals(base, cache), base.durations, task.id, SUBMIT_MAX_STEPS);
  return answer(f, task.id, nowMs);
}

/**
 * Runs the forecast within the time budget: once, and SAMPLES times (averaged) when the first
 * run was cheap enough to repeat. Over budget: a run of zero steps, i.e. the FCFS arithmetic.
 */
function simulate(
  config: Config,
  cache: Cache,
  state: ForecastState,
  durations: Durations,
  focus: string | undefined,
  maxSteps: number,
): Forecast {
  const started = performance.now();
  const steps = budget(cache) > 0 ? maxSteps : 0;
  const runs = [forecast(config, state, durations, { focus, maxSteps: steps, seed: 1 })];
  const once = performance.now() - started;
  const settled = focus === undefined ? runs[0]!.complete : (runs[0]!.get(focus)?.simulated ?? false);
  if (settled && steps > 0 && once <= SAMPLE_MAX_MS && cache.budgetMs - once > once * SAMPLES) {
    while (runs.length < SAMPLES)
      runs.push(forecast(config, state, durations, { focus, maxSteps: steps, seed: runs.length + 1 }));
  }
  cache.budgetMs -= performance.now() - started;
  return Forecast.average(runs);
}

function answer(f: Forecast, id: string, nowMs: number): TaskEstimate | undefined {
  const eta = f.etaSeconds(id, nowMs);
  return eta === undefined ? undefined : { position: f.position(id, nowMs), eta_seconds: eta };
}

/** The run every read shares: the base and this process's arrivals, redone when they change. */
function sharedRun(config: Config, cache: Cache, base: Base): Forecast {
  const run = cache.run;
  if (run && run.base === base && run.arrivals === cache.arrivals.size) return run.forecast;
  const f = simulate(config, cache, withArrivals(base, cache), base.durations, undefined, RUN_MAX_STEPS);
  cache.run = { base, arrivals: cache.arrivals.size, forecast: f };
  return f;
}

function withArrivals(base: Base, cache: Cache): ForecastState {
  if (cache.arrivals.size === 0) return base.state;
  return { ...base.state, tasks: [...base.state.tasks, ...cache.arrivals.values()] };
}

/** The base's FCFS line, with the arrivals not in it yet appended. */
function lineFor(config: Config, cache: Cache, base: Base): FcfsLine {
  if (!base.line) {
    base.line = new FcfsLine(config, base.state.effectiveConcurrency, base.durations);
    cache.lined.clear();
    for (const t of base.state.tasks) {
      const work = workOfStateTask(config, t, base.durations);
      if (work) base.line.push(work, t.state === 'queued');
    }
  }
  for (const [id, t] of cache.arrivals) {
    if (cache.lined.has(id)) continue;
    const work = workOfStateTask(config, t, base.durations);
    if (work) base.line.push(work, true);
    cache.lined.add(id);
  }
  return base.line;
}

/** A task the base does not hold, as an arrival at its creation time (database clock). */
function arrivalOf(task: TaskRow): ForecastTask {
  const created = task.created_at.getTime();
  return {
    id: task.id,
    userId: task.user_id,
    plan: task.plan,
    type: task.type,
    weight: task.weight,
    imagesTotal: task.images_total,
    done: task.images_done,
    failed: task.images_failed,
    createdAtMs: created,
    deadlineAtMs: task.deadline_at?.getTime(),
    state: 'queued',
    arriveAtMs: created,
  };
}

// ---- the base: the queue as read from the database -----------------------------------------

async function baseFor(q: Queryable, config: Config, cache: Cache): Promise<Base> {
  const base = cache.base;
  if (base && Date.now() - base.readAtLocalMs < BASE_MAX_AGE_MS) return base;
  const loading = cache.loading;
  // Never wait on a read running on another connection or transaction: on the embedded
  // database a transaction holds every other query back, so that could wait on itself.
  if (loading?.q === q) return loading.promise;
  if (loading && base) return base;
  const promise = readBase(q, config);
  cache.loading = { q, promise };
  try {
    const fresh = await promise;
    if (!cache.base || fresh.readAtLocalMs >= cache.base.readAtLocalMs) {
      cache.base = fresh;
      for (const [id, t] of cache.arrivals)
        if (fresh.ids.has(id) || t.createdAtMs < fresh.state.nowMs - ARRIVAL_KEEP_MS)
          cache.arrivals.delete(id);
      cache.run = undefined;
    }
    return fresh;
  } finally {
    if (cache.loading?.promise === promise) cache.loading = undefined;
  }
}

async function readBase(q: Queryable, config: Config): Promise<Base> {
  const windowMs = 60_000 + config.scheduler.rpmWindowMarginMs;
  const snap = await readQueueSnapshot(q, {
    maxTasks: SNAPSHOT_MAX_TASKS,
    windowMs,
    workerStaleMs: Math.max(config.worker.heartbeatMs * 3, 3000),
  });
  const readAtLocalMs = Date.now();
  const durations = await measuredDurations(q, config);
  const state = stateOf(config, snap);
  return {
    readAtLocalMs,
    state,
    durations,
    ids: new Set(state.tasks.map((t) => t.id)),
    truncated: snap.truncated,
  };
}

/**
 * Mean job durations per step, measured (else the defaults), and the delay from an admission to
 * its call starting: the measured claim delay plus half a scheduler poll (a job's end wakes no
 * scheduler; the next poll admits what follows it).
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
  return durationsFor(config, measured, claimMs + config.scheduler.pollMs / 2);
}

/** The snapshot as the forecast's state. */
function stateOf(config: Config, snap: QueueSnapshot): ForecastState {
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
    // No live worker yet (one is starting, or this is an API-only process before any joined):
    // assume one worker of the configured size rather than a queue that never moves.
    workerSlots: snap.workerSlots > 0 ? snap.workerSlots : config.worker.concurrency,
    tasks,
    keys: [...keys.values()],
    effectiveConcurrency,
    lastServedAtMs,
  };
}

// ---- first-come-first-served, from the database (huge queues) --------------------------------

const DEFAULT_CALL_MS = 8000; // the source documents' measured batch latency
const DEFAULT_STORE_MS = 500;

/** Provider calls a task of this pipeline makes from a stage on (fan-out not yet created). */
function callsFromStage(
  pipeline: ResolvedPipeline,
  stage: string | null,
  images: number,
): { calls: number; serial: number } {
  const from = Math.max(
    0,
    pipeline.steps.findIndex((s) => s.name === stage),
  );
  let calls = 0;
  let serial = 0;
  for (const step of pipeline.steps.slice(from)) {
    if (step.kind === 'transform') {
      calls += step.calls;
      serial += 1;
    } else if (step.kind === 'generate') calls += Math.ceil(images / step.batchSize);
  }
  return { calls, serial };
}

async function throughputOf(q: Queryable, config: Config, providerName: string): Promise<ProviderThroughput> {
  const provider = config.providers[providerName]!;
  const usable = provider.keys.filter((k) => keyIsUsable(provider, k));
  const state = (await providerStates(q)).find((s) => s.provider === providerName && s.key_id === '');
  const effective = Math.min(provider.concurrency, state?.effective_concurrency ?? provider.concurrency);
  const measured = await meanJobMs(q, providerName, 'call');
  const fallback = provider.type === 'sim' ? provider.sim.latencyMs : DEFAULT_CALL_MS;
  return {
    concurrency: Math.max(
      1,
      Math.min(
        effective,
        usable.reduce((n, k) => n + k.concurrency, 0),
      ),
    ),
    rpm: Math.max(
      1,
      usable.reduce((n, k) => n + k.rpm, 0),
    ),
    meanCallMs: measured ?? fallback,
  };
}

/**
 * The estimate before the forecast, kept for tasks beyond the forecast's snapshot: the provider
 * calls of every task created earlier divided by the provider's throughput, plus this task's own
 * service time (src/policy/estimate.ts). First-come-first-served: fair share is not modelled.
 */
export async function fcfsEstimate(q: Queryable, config: Config, task: TaskRow): Promise<TaskEstimate> {
  if (task.state !== 'queued' && task.state !== 'running') return { position: 0, eta_seconds: null };
  const pipeline = config.pipelines[task.type];
  const generate = pipeline?.steps.find((s) => s.kind === 'generate');
  if (!pipeline || !generate?.provider || !config.providers[generate.provider])
    return { position: 0, eta_seconds: null };
  const ahead = await workAhead(q, task);
  const throughput = await throughputOf(q, config, generate.provider);
  let aheadCalls = 0;
  for (const group of ahead.byStage) {
    const p = config.pipelines[group.type];
    if (!p) continue;
    // The calls still to make for the group's unfinished images, from its stage on.
    const perTask = callsFromStage(p, group.stage, Math.ceil(group.remaining / Math.max(1, group.tasks)));
    aheadCalls += perTask.calls * group.tasks;
  }
  const store = pipeline.steps.find((s) => s.kind === 'store');
  const remainingImages = task.images_total - task.images_done - task.images_failed;
  const own = callsFromStage(pipeline, task.stage, remainingImages);
  const work: TaskWork = {
    calls: own.calls,
    serialCalls: own.serial,
    storeUnits: remainingImages,
    storeConcurrency: store?.concurrency ?? 5,
    meanStoreMs:
      (store ? await meanJobMs(q, storeResource(pipeline, store), 'store') : undefined) ?? DEFAULT_STORE_MS,
  };
  return {
    position: task.state === 'queued' ? ahead.queuedTasksAhead : 0,
    eta_seconds: estimateEtaSeconds(aheadCalls, work, throughput),
  };
}

/** Forgets this process's forecast for a configuration (tests). */
export function resetForecastCache(config: Config): void {
  caches.delete(config);
}
