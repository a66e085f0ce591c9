import type { Config } from '../config/load.ts';
import { simulate, type SimRun } from './engine.ts';
import { summarize, type PlanReport, type PlanStats } from './metrics.ts';
import { ScenarioError, type Scenario } from './scenario.ts';
import { applySetting } from './settings.ts';

export interface SweepSpec {
  name: string;
  values: number[];
}

/** `keys=1..10`, `maxRunningTasks=10..60:10` (step), or `workers=1,2,4,8`. */
export function parseSweep(text: string): SweepSpec {
  const m = /^([\w.:-]+)=(.+)$/.exec(text.trim());
  if (!m) throw new ScenarioError(`--sweep "${text}": expected name=from..to[:step] or name=a,b,c`);
  const name = m[1]!;
  const spec = m[2]!;
  const range = /^(\d+)\.\.(\d+)(?::(\d+))?$/.exec(spec);
  let values: number[];
  if (range) {
    const from = Number(range[1]);
    const to = Number(range[2]);
    const step = Number(range[3] ?? 1);
    if (step < 1 || to < from)
      throw new ScenarioError(`--sweep "${text}": the range must ascend with a positive step`);
    values = [];
    for (let v = from; v <= to; v += step) values.push(v);
  } else {
    values = spec.split(',').map((v) => Number(v.trim()));
    if (values.some((v) => !Number.isFinite(v)))
      throw new ScenarioError(`--sweep "${text}": values must be numbers`);
  }
  values = [...new Set(values)].sort((a, b) => a - b);
  if (values.length === 0) throw new ScenarioError(`--sweep "${text}": no values`);
  return { name, values };
}

/** `concurrency=12`: one setting with one value (for --set). */
export function parseSetting(text: string): { name: string; value: number } {
  const m = /^([\w.:-]+)=(\d+(?:\.\d+)?)$/.exec(text.trim());
  if (!m) throw new ScenarioError(`--set "${text}": expected name=number`);
  return { name: m[1]!, value: Number(m[2]) };
}

export type Metric =
  | `${'p50' | 'p95' | 'p99' | 'max' | 'mean'}_${'wait' | 'completion'}`
  | 'tasks_per_min'
  | 'images_per_min'
  | 'max_queue'
  | 'rate_limited'
  | 'unfinished';

const METRICS: readonly Metric[] = [
  'p50_wait',
  'p95_wait',
  'p99_wait',
  'max_wait',
  'mean_wait',
  'p50_completion',
  'p95_completion',
  'p99_completion',
  'max_completion',
  'mean_completion',
  'tasks_per_min',
  'images_per_min',
  'max_queue',
  'rate_limited',
  'unfinished',
];
const AT_LEAST: ReadonlySet<Metric> = new Set<Metric>(['tasks_per_min', 'images_per_min']);

export interface Target {
  metric: Metric;
  /** A plan name, or undefined for all tasks. */
  plan: string | undefined;
  /** Seconds for time metrics; a count or rate otherwise. */
  value: number;
  text: string;
}

/** `p95_wait=60s`, `p99_completion@pro=3m`, `tasks_per_min=10`; several separated by commas. */
export function parseTargets(text: string): Target[] {
  return text
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => {
      const m = /^([a-z0-9_]+)(?:@([\w-]+))?=([\d.]+)(ms|s|m|h)?$/.exec(t);
      if (!m || !(METRICS as readonly string[]).includes(m[1]!)) {
        throw new ScenarioError(
          `--target "${t}": expected metric[@plan]=value[ms|s|m|h], metrics: ${METRICS.join(', ')}`,
        );
      }
      const unit = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[4] ?? 's']!;
      const metric = m[1] as Metric;
      const isTime = metric.endsWith('_wait') || metric.endsWith('_completion');
      return { metric, plan: m[2], value: Number(m[3]) * (isTime ? unit : 1), text: t };
    });
}

export function metricValue(report: PlanReport, metric: Metric, plan: string | undefined): number {
  const stats: PlanStats | undefined =
    plan === undefined ? report.overall : report.plans.find((p) => p.plan === plan);
  if (!stats) return Number.NaN;
  switch (metric) {
    case 'tasks_per_min':
      return report.throughput.tasksPerMin;
    case 'images_per_min':
      return report.throughput.imagesPerMin;
    case 'max_queue':
      return report.queue.maxDepth;
    case 'rate_limited':
      return report.rateLimited;
    case 'unfinished':
      return stats.unfinished;
    default: {
      const [which, kind] = metric.split('_') as [
        'p50' | 'p95' | 'p99' | 'max' | 'mean',
        'wait' | 'completion',
      ];
      return stats[kind][which];
    }
  }
}

export function meets(report: PlanReport, targets: Target[]): boolean {
  // A run that left work unfinished meets nothing.
  if (report.stoppedEarly || report.overall.unfinished > 0) return false;
  return targets.every((t) => {
    const v = metricValue(report, t.metric, t.plan);
    return Number.isFinite(v) && (AT_LEAST.has(t.metric) ? v >= t.value : v <= t.value);
  });
}

export interface SweepRow {
  value: number;
  report: PlanReport;
  run: SimRun;
  meets: boolean | undefined;
}

export interface SweepResult {
  name: string;
  rows: SweepRow[];
  targets: Target[];
  /** The smallest value meeting every target; undefined when none does (or no target). */
  best: number | undefined;
}

export function runSweep(
  config: Config,
  scenario: Scenario,
  sweep: SweepSpec,
  targets: Target[],
  fixed: Record<string, number> = {},
  /** Called as each value's run ends (the dashboard's progress). */
  onRow?: (row: SweepRow, index: number) => void,
): SweepResult {
  const rows: SweepRow[] = sweep.values.map((value, index) => {
    const applied = applySetting(config, scenario, sweep.name, value);
    const run = simulate(applied.config, applied.scenario);
    const report = summarize(run, applied.config, applied.scenario, { ...fixed, [sweep.name]: value });
    const row = { value, report, run, meets: targets.length ? meets(report, targets) : undefined };
    onRow?.(row, index);
    return row;
  });
  const best = rows.find((r) => r.meets)?.value;
  return { name: sweep.name, rows, targets, best };
}
