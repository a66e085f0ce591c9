import type { Config } from '../config/load.ts';
import type { SimRun, TaskRecord } from './engine.ts';
import type { Scenario } from './scenario.ts';

/** Distribution summary, in seconds. Percentiles are nearest-rank. */
export interface Stats {
  count: number;
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface PlanStats {
  plan: string;
  submitted: number;
  rejected: number;
  succeeded: number;
  partial: number;
  failed: number;
  canceled: number;
  unfinished: number;
  images: number;
  imagesDone: number;
  /** Submit → first job start, over tasks that started. */
  wait: Stats;
  /** Submit → end, over tasks that started and ended. */
  completion: Stats;
  /** Tasks (succeeded or partial) and images delivered per minute of the run. */
  tasksPerMin: number;
  imagesPerMin: number;
}

export interface KeyReport {
  id: string;
  rpm: number;
  concurrency: number;
  requests: number;
  rateLimited: number;
  /** Requests ÷ the most its RPM allows over the run (rpm × ⌈span / 60 s⌉). */
  rpmUse: number;
  /** Time in flight ÷ (concurrency × time simulated). */
  utilisation: number;
  maxIn60s: number;
  maxInFlight: number;
}

export interface ProviderReport {
  name: string;
  capacity: number;
  utilisation: number;
  calls: number;
  rateLimited: number;
  minEffectiveConcurrency: number;
  keys: KeyReport[];
}

export interface PlanReport {
  scenario: string;
  seed: number;
  config: string;
  settings: {
    workers: number;
    workerSlots: number;
    maxRunningTasks: number;
    perUserRunningTasks: number;
    providers: Array<{ name: string; concurrency: number; keys: number; rpm: number }>;
    overrides: Record<string, number>;
  };
  /** First arrival to last task end, seconds. */
  simulatedSeconds: number;
  overall: PlanStats;
  plans: PlanStats[];
  throughput: { tasksPerMin: number; imagesPerMin: number };
  queue: { maxDepth: number; meanDepth: number; maxRunning: number };
  providers: ProviderReport[];
  stores: Array<{ name: string; concurrency: number; jobs: number; images: number; utilisation: number }>;
  rateLimited: number;
  errors: SimRun['errors'];
  retries: number;
  decisions: number;
  stoppedEarly: boolean;
  /** Queue depth over time, downsampled (max per bucket). */
  series: { tSeconds: number[]; queued: number[]; running: number[] };
}

export function stats(valuesMs: number[]): Stats {
  if (valuesMs.length === 0) return { count: 0, mean: 0, p50: 0, p95: 0, p99: 0, max: 0 };
  const s = [...valuesMs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]! / 1000;
  return {
    count: s.length,
    mean: s.reduce((a, b) => a + b, 0) / s.length / 1000,
    p50: at(50),
    p95: at(95),
    p99: at(99),
    max: s[s.length - 1]! / 1000,
  };
}

export function waitsMs(tasks: TaskRecord[]): number[] {
  return tasks.filter((t) => t.startedMs !== undefined).map((t) => t.startedMs! - t.submittedMs);
}

export function completionsMs(tasks: TaskRecord[]): number[] {
  return tasks
    .filter((t) => t.startedMs !== undefined && t.finishedMs !== undefined)
    .map((t) => t.finishedMs! - t.submittedMs);
}

function planStats(plan: string, tasks: TaskRecord[], rejected: number, minutes: number): PlanStats {
  const count = (state: TaskRecord['state']) => tasks.filter((t) => t.state === state).length;
  return {
    plan,
    submitted: tasks.length + rejected,
    rejected,
    succeeded: count('succeeded'),
    partial: count('partial'),
    failed: count('failed'),
    canceled: count('canceled'),
    unfinished: count('unfinished'),
    images: tasks.reduce((n, t) => n + t.images, 0),
    imagesDone: tasks.reduce((n, t) => n + t.done, 0),
    wait: stats(waitsMs(tasks)),
    completion: stats(completionsMs(tasks)),
    tasksPerMin: round(
      tasks.filter((t) => t.state === 'succeeded' || t.state === 'partial').length / minutes,
      2,
    ),
    imagesPerMin: round(tasks.reduce((n, t) => n + t.done, 0) / minutes, 2),
  };
}

export function downsample(
  series: SimRun['depth'],
  startMs: number,
  endMs: number,
  buckets = 400,
): PlanReport['series'] {
  const out: PlanReport['series'] = { tSeconds: [], queued: [], running: [] };
  if (series.tMs.length === 0) return out;
  const span = Math.max(1, endMs - startMs);
  const width = span / buckets;
  let i = 0;
  let queued = 0;
  let running = 0;
  for (let b = 0; b <= buckets; b++) {
    const from = startMs + b * width;
    const to = from + width;
    let maxQ = queued;
    let maxR = running;
    while (i < series.tMs.length && series.tMs[i]! < to) {
      queued = series.queued[i]!;
      running = series.running[i]!;
      maxQ = Math.max(maxQ, queued);
      maxR = Math.max(maxR, running);
      i++;
    }
    out.tSeconds.push(round((from - startMs) / 1000, 3));
    out.queued.push(maxQ);
    out.running.push(maxR);
  }
  return out;
}

function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function summarize(
  run: SimRun,
  config: Config,
  scenario: Scenario,
  overrides: Record<string, number> = {},
): PlanReport {
  const spanMs = Math.max(1, run.endMs - run.startMs);
  const minutes = spanMs / 60_000;
  const plans = [...new Set([...run.tasks.map((t) => t.plan), ...run.rejected.map((r) => r.plan)])].sort(
    (a, b) => (config.plans[a]?.images ?? 0) - (config.plans[b]?.images ?? 0) || (a < b ? -1 : 1),
  );
  const rejectedBy = (plan?: string) =>
    run.rejected.filter((r) => plan === undefined || r.plan === plan).length;
  const overall = planStats('all', run.tasks, rejectedBy(), minutes);
  return {
    scenario: scenario.name ?? 'scenario',
    seed: scenario.seed,
    config: config.source,
    settings: {
      workers: scenario.workers,
      workerSlots: run.workerSlots,
      maxRunningTasks: config.limits.maxRunningTasks,
      perUserRunningTasks: config.limits.perUserRunningTasks,
      providers: Object.values(config.providers).map((p) => ({
        name: p.name,
        concurrency: p.concurrency,
        keys: p.keys.filter((k) => !k.disabled).length,
        rpm: p.keys.filter((k) => !k.disabled).reduce((n, k) => n + k.rpm, 0),
      })),
      overrides,
    },
    simulatedSeconds: round(spanMs / 1000),
    overall,
    plans: plans.map((p) =>
      planStats(
        p,
        run.tasks.filter((t) => t.plan === p),
        rejectedBy(p),
        minutes,
      ),
    ),
    throughput: {
      tasksPerMin: overall.tasksPerMin,
      imagesPerMin: overall.imagesPerMin,
    },
    queue: {
      maxDepth: Math.max(0, ...run.depth.queued),
      meanDepth: round(run.queuedAreaMs / spanMs, 2),
      maxRunning: Math.max(0, ...run.depth.running),
    },
    providers: run.providers
      .filter((p) => p.calls > 0)
      .map((p) => ({
        name: p.name,
        capacity: p.capacity,
        utilisation: round(p.busyMs / (Math.max(1, p.capacity) * spanMs)),
        calls: p.calls,
        rateLimited: p.rateLimited,
        minEffectiveConcurrency: round(p.minEffectiveConcurrency, 2),
        keys: p.keys.map((k) => ({
          id: k.id,
          rpm: k.rpm,
          concurrency: k.concurrency,
          requests: k.requests,
          rateLimited: k.rateLimited,
          rpmUse: round(k.requests / (k.rpm * Math.ceil(spanMs / 60_000))),
          utilisation: round(k.busyMs / (k.concurrency * spanMs)),
          maxIn60s: k.maxIn60s,
          maxInFlight: k.maxInFlight,
        })),
      })),
    stores: run.stores
      .filter((s) => s.jobs > 0)
      .map((s) => ({
        name: s.name,
        concurrency: s.concurrency,
        jobs: s.jobs,
        images: s.images,
        utilisation: round(s.busyMs / (s.concurrency * spanMs)),
      })),
    rateLimited: run.providers.reduce((n, p) => n + p.rateLimited, 0),
    errors: run.errors,
    retries: run.retries,
    decisions: run.decisions,
    stoppedEarly: run.stoppedEarly,
    series: downsample(run.depth, run.startMs, run.endMs),
  };
}
