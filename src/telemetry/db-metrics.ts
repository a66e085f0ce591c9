import type { Registry } from 'prom-client';
import type { Config } from '../config/load.ts';
import type { Queryable } from '../store/db.ts';
import { jobsInFlight, liveWorkers, queueHeads } from '../store/admin-stats.ts';
import {
  JOB_SECONDS_BUCKETS,
  readCounters,
  TASK_SECONDS_BUCKETS,
  type CounterRow,
} from '../store/counters.ts';
import { providerStates, type ProviderStateRow } from '../store/provider-state.ts';
import { workerStaleMs } from './stats.ts';

/**
 * Series read from the database at scrape time: the same cluster-wide figures from every
 * process (the counters and histograms the triggers keep, the queue's gauges). Scrape one
 * API process for them, or aggregate with max() across processes, not sum().
 */

type MetricType = 'counter' | 'gauge' | 'histogram';
type Sample = { value: number; labels: Record<string, string | number>; metricName?: string };

export interface DbSnapshot {
  counters: CounterRow[];
  oldestQueuedAgeSeconds: number;
  workers: { live: number; slots: number; running: number };
  providerState: ProviderStateRow[];
  inFlight: Array<{ resource: string; key_id: string | null; admitted: number; running: number }>;
  /** Extra gauges other parts register (alerts firing, webhook backlog). */
  extra: Record<string, Sample[]>;
}

export type ExtraGauge = (q: Queryable) => Promise<Sample[]>;

export async function readDbSnapshot(
  q: Queryable,
  config: Config,
  extras: Record<string, ExtraGauge>,
): Promise<DbSnapshot> {
  const [counters, heads, workers, providerState, inFlight] = await Promise.all([
    readCounters(q, [
      'tasks_submitted',
      'tasks_finished',
      'tasks_active',
      'jobs_active',
      'jobs_admitted',
      'task_duration_seconds',
      'task_queue_wait_seconds',
      'job_duration_seconds',
      'job_queue_wait_seconds',
      'lease_expiries',
      'credits_charge',
      'credits_refund',
    ]),
    queueHeads(q),
    liveWorkers(q, workerStaleMs(config)),
    providerStates(q),
    jobsInFlight(q),
  ]);
  const extra: Record<string, Sample[]> = {};
  for (const [name, read] of Object.entries(extras)) extra[name] = await read(q);
  return {
    counters,
    oldestQueuedAgeSeconds: Number(heads.oldest_queued_age_seconds ?? 0),
    workers: {
      live: workers.length,
      slots: workers.filter((w) => !w.stopping).reduce((n, w) => n + w.slots, 0),
      running: workers.reduce((n, w) => n + w.running, 0),
    },
    providerState,
    inFlight,
    extra,
  };
}

function withoutLe(labels: Record<string, string>): Record<string, string> {
  const { le: _le, ...rest } = labels;
  return rest;
}

/** Cumulative Prometheus buckets from the per-bucket counts the triggers keep. */
function histogramSamples(rows: CounterRow[], name: string, bounds: number[]): Sample[] {
  const metric = `darkroom_${name}`;
  const series = new Map<
    string,
    { labels: Record<string, string>; byLe: Map<string, number>; sum: number }
  >();
  for (const r of rows.filter((c) => c.name === name)) {
    const labels = withoutLe(r.labels);
    const key = JSON.stringify(Object.entries(labels).sort());
    const s = series.get(key) ?? { labels, byLe: new Map(), sum: 0 };
    s.byLe.set(r.labels.le ?? '+Inf', (s.byLe.get(r.labels.le ?? '+Inf') ?? 0) + r.n);
    s.sum += r.v;
    series.set(key, s);
  }
  const out: Sample[] = [];
  for (const s of series.values()) {
    let cumulative = 0;
    for (const b of bounds) {
      cumulative += s.byLe.get(String(b)) ?? 0;
      out.push({ metricName: `${metric}_bucket`, labels: { ...s.labels, le: b }, value: cumulative });
    }
    cumulative += s.byLe.get('+Inf') ?? 0;
    out.push({ metricName: `${metric}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: cumulative });
    out.push({ metricName: `${metric}_sum`, labels: s.labels, value: s.sum });
    out.push({ metricName: `${metric}_count`, labels: s.labels, value: cumulative });
  }
  return out;
}

function counterSamples(rows: CounterRow[], name: string, field: 'n' | 'v' = 'n'): Sample[] {
  return rows.filter((r) => r.name === name).map((r) => ({ labels: r.labels, value: r[field] }));
}

interface DbMetricSpec {
  name: string;
  help: string;
  type: MetricType;
  samples: (s: DbSnapshot, config: Config) => Sample[];
}

const SPECS: DbMetricSpec[] = [
  {
    name: 'darkroom_tasks_submitted_total',
    help: 'Tasks accepted, by plan (all processes).',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'tasks_submitted'),
  },
  {
    name: 'darkroom_tasks_finished_total',
    help: 'Tasks ended, by plan and final state: succeeded, partial, failed, canceled.',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'tasks_finished'),
  },
  {
    name: 'darkroom_queue_depth',
    help: 'Tasks queued now, by plan.',
    type: 'gauge',
    samples: (s, config) => activeByPlan(s, config, 'queued'),
  },
  {
    name: 'darkroom_tasks_running',
    help: 'Tasks running now, by plan.',
    type: 'gauge',
    samples: (s, config) => activeByPlan(s, config, 'running'),
  },
  {
    name: 'darkroom_jobs',
    help: 'Jobs by resource and state (queued, admitted, running) now.',
    type: 'gauge',
    samples: (s) => counterSamples(s.counters, 'jobs_active'),
  },
  {
    name: 'darkroom_jobs_admitted_total',
    help: 'Jobs the scheduler admitted, by resource.',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'jobs_admitted'),
  },
  {
    name: 'darkroom_task_duration_seconds',
    help: 'Submit to end of finished tasks, by plan.',
    type: 'histogram',
    samples: (s) => histogramSamples(s.counters, 'task_duration_seconds', TASK_SECONDS_BUCKETS),
  },
  {
    name: 'darkroom_task_queue_wait_seconds',
    help: 'Submit to first admitted job of tasks, by plan.',
    type: 'histogram',
    samples: (s) => histogramSamples(s.counters, 'task_queue_wait_seconds', TASK_SECONDS_BUCKETS),
  },
  {
    name: 'darkroom_job_duration_seconds',
    help: 'Claim to outcome of jobs, by kind, resource and state.',
    type: 'histogram',
    samples: (s) => histogramSamples(s.counters, 'job_duration_seconds', JOB_SECONDS_BUCKETS),
  },
  {
    name: 'darkroom_job_queue_wait_seconds',
    help: 'Ready to claimed of jobs, by kind and resource.',
    type: 'histogram',
    samples: (s) => histogramSamples(s.counters, 'job_queue_wait_seconds', JOB_SECONDS_BUCKETS),
  },
  {
    name: 'darkroom_lease_expiries_total',
    help: 'Running jobs whose lease expired before their outcome was recorded, by resource.',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'lease_expiries'),
  },
  {
    name: 'darkroom_refunds_total',
    help: 'Tasks refunded (at most once each).',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'credits_refund'),
  },
  {
    name: 'darkroom_refunded_credits_total',
    help: 'Credits refunded.',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'credits_refund', 'v'),
  },
  {
    name: 'darkroom_charged_credits_total',
    help: 'Credits charged at submit.',
    type: 'counter',
    samples: (s) => counterSamples(s.counters, 'credits_charge', 'v'),
  },
  {
    name: 'darkroom_oldest_queued_age_seconds',
    help: 'Age of the oldest queued task (0 when none is queued).',
    type: 'gauge',
    samples: (s) => [{ labels: {}, value: s.oldestQueuedAgeSeconds }],
  },
  {
    name: 'darkroom_workers_live',
    help: 'Worker processes with a recent heartbeat.',
    type: 'gauge',
    samples: (s) => [{ labels: {}, value: s.workers.live }],
  },
  {
    name: 'darkroom_worker_slots',
    help: 'Job slots of the live workers that are not stopping.',
    type: 'gauge',
    samples: (s) => [{ labels: {}, value: s.workers.slots }],
  },
  {
    name: 'darkroom_provider_in_flight',
    help: 'Provider calls admitted or running now, by provider and key.',
    type: 'gauge',
    samples: (s, config) =>
      s.inFlight
        .filter((f) => config.providers[f.resource])
        .map((f) => ({
          labels: { provider: f.resource, key: f.key_id ?? '' },
          value: f.admitted + f.running,
        })),
  },
  {
    name: 'darkroom_provider_effective_concurrency',
    help: 'Provider concurrency after AIMD adaptation to 429s.',
    type: 'gauge',
    samples: (s, config) =>
      Object.values(config.providers).map((p) => {
        const row = s.providerState.find((r) => r.provider === p.name && r.key_id === '');
        return {
          labels: { provider: p.name },
          value: Math.min(p.concurrency, row?.effective_concurrency ?? p.concurrency),
        };
      }),
  },
  {
    name: 'darkroom_key_cooldown_seconds',
    help: 'Seconds left of a key’s cool-down after a 429 (0 when none).',
    type: 'gauge',
    samples: (s, config) =>
      Object.values(config.providers).flatMap((p) =>
        p.keys.map((k) => {
          const until = s.providerState.find(
            (r) => r.provider === p.name && r.key_id === k.id,
          )?.cooldown_until;
          return {
            labels: { provider: p.name, key: k.id },
            value: until ? Math.max(0, (until.getTime() - Date.now()) / 1000) : 0,
          };
        }),
      ),
  },
];

function activeByPlan(s: DbSnapshot, config: Config, state: 'queued' | 'running'): Sample[] {
  const byPlan = new Map(Object.keys(config.plans).map((p) => [p, 0]));
  for (const r of s.counters)
    if (r.name === 'tasks_active' && r.labels.state === state && r.labels.plan !== undefined)
      byPlan.set(r.labels.plan, (byPlan.get(r.labels.plan) ?? 0) + r.n);
  return [...byPlan].map(([plan, value]) => ({ labels: { plan }, value }));
}

export interface ExtraGaugeSpec {
  name: string;
  help: string;
  read: ExtraGauge;
}

/**
 * Registers the database-derived series; `refresh` must run before each scrape (the /metrics
 * route does it) so that every series of one scrape comes from one snapshot.
 */
export function registerDbMetrics(
  registry: Registry,
  config: Config,
  extras: ExtraGaugeSpec[] = [],
): { refresh: (q: Queryable) => Promise<void> } {
  let snapshot: DbSnapshot | undefined;
  const specs: DbMetricSpec[] = [
    ...SPECS,
    ...extras.map((e) => ({
      name: e.name,
      help: e.help,
      type: 'gauge' as const,
      samples: (s: DbSnapshot) => s.extra[e.name] ?? [],
    })),
  ];
  for (const spec of specs) {
    const metric = {
      name: spec.name,
      help: spec.help,
      type: spec.type,
      aggregator: 'max' as const,
      collect: () => {},
      reset: () => {},
      get: async () => ({
        name: spec.name,
        help: spec.help,
        type: spec.type,
        aggregator: 'max' as const,
        values: snapshot ? spec.samples(snapshot, config) : [],
      }),
    };
    // prom-client's registry needs only name and get() of a metric; these are computed, not incremented.
    registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
  }
  const extraReaders = Object.fromEntries(extras.map((e) => [e.name, e.read]));
  return {
    async refresh(q) {
      snapshot = await readDbSnapshot(q, config, extraReaders);
    },
  };
}
