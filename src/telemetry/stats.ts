import { workerStaleMs, type Config } from '../config/load.ts';
import type { Queryable } from '../store/db.ts';
import { liveWorkers, queueHeads, throughput } from '../store/admin-stats.ts';
import { readCounters, type CounterRow } from '../store/counters.ts';

export { workerStaleMs };

const FINAL_STATES = ['succeeded', 'partial', 'failed', 'canceled'] as const;

export interface StatsView {
  total_submitted: number;
  total_succeeded: number;
  total_partial: number;
  total_failed: number;
  total_canceled: number;
  queued: number;
  running: number;
  by_plan: Record<string, { queued: number; running: number; submitted: number }>;
  /** Jobs per resource: a provider name, or `store:<pipeline>.<step>` for storage steps. */
  by_resource: Record<string, { queued: number; admitted: number; running: number }>;
  oldest_queued_age_seconds: number | null;
  oldest_queued_task_id: string | null;
  max_queued: number;
  workers: {
    live: number;
    slots: number;
    running: number;
    list: Array<{
      id: string;
      host: string;
      pid: number;
      roles: string[];
      slots: number;
      running: number;
      stopping: boolean;
      heartbeat_at: string;
    }>;
  };
  last_finished_at: string | null;
  throughput: Record<
    '1m' | '5m' | '15m',
    { tasks: number; images: number; tasks_per_minute: number; images_per_minute: number }
  >;
  now: string;
}

function sumWhere(rows: CounterRow[], name: string, match: Record<string, string> = {}): number {
  return rows
    .filter((r) => r.name === name && Object.entries(match).every(([k, v]) => r.labels[k] === v))
    .reduce((n, r) => n + r.n, 0);
}

/** Everything `GET /v1/admin/stats` answers: counters, a few index probes, the workers table. */
export async function collectStats(q: Queryable, config: Config): Promise<StatsView> {
  const [counters, heads, tp, workers] = await Promise.all([
    readCounters(q, ['tasks_submitted', 'tasks_finished', 'tasks_active', 'jobs_active']),
    queueHeads(q),
    throughput(q),
    liveWorkers(q, workerStaleMs(config)),
  ]);
  const byPlan: StatsView['by_plan'] = {};
  for (const plan of Object.keys(config.plans)) byPlan[plan] = { queued: 0, running: 0, submitted: 0 };
  for (const r of counters) {
    const plan = r.labels.plan;
    if (plan === undefined) continue;
    const entry = (byPlan[plan] ??= { queued: 0, running: 0, submitted: 0 });
    if (r.name === 'tasks_submitted') entry.submitted += r.n;
    if (r.name === 'tasks_active' && (r.labels.state === 'queued' || r.labels.state === 'running'))
      entry[r.labels.state] += r.n;
  }
  const byResource: StatsView['by_resource'] = {};
  for (const name of Object.keys(config.providers)) byResource[name] = { queued: 0, admitted: 0, running: 0 };
  for (const r of counters.filter((c) => c.name === 'jobs_active')) {
    const state = r.labels.state as 'queued' | 'admitted' | 'running';
    const entry = (byResource[r.labels.resource ?? '?'] ??= { queued: 0, admitted: 0, running: 0 });
    entry[state] += r.n;
  }
  const finals = Object.fromEntries(
    FINAL_STATES.map((s) => [s, sumWhere(counters, 'tasks_finished', { state: s })]),
  );
  const window = (i: number, minutes: number) => {
    const t = tp[i]!;
    return {
      tasks: t.tasks,
      images: t.images,
      tasks_per_minute: t.tasks / minutes,
      images_per_minute: t.images / minutes,
    };
  };
  return {
    total_submitted: sumWhere(counters, 'tasks_submitted'),
    total_succeeded: finals.succeeded!,
    total_partial: finals.partial!,
    total_failed: finals.failed!,
    total_canceled: finals.canceled!,
    queued: sumWhere(counters, 'tasks_active', { state: 'queued' }),
    running: sumWhere(counters, 'tasks_active', { state: 'running' }),
    by_plan: byPlan,
    by_resource: byResource,
    oldest_queued_age_seconds:
      heads.oldest_queued_age_seconds === null ? null : Number(heads.oldest_queued_age_seconds),
    oldest_queued_task_id: heads.oldest_queued_task_id,
    max_queued: config.limits.maxQueuedTasks,
    workers: {
      live: workers.length,
      slots: workers.filter((w) => !w.stopping).reduce((n, w) => n + w.slots, 0),
      running: workers.reduce((n, w) => n + w.running, 0),
      list: workers.map((w) => ({
        id: w.id,
        host: w.host,
        pid: w.pid,
        roles: w.roles.split(',').filter(Boolean),
        slots: w.slots,
        running: w.running,
        stopping: w.stopping,
        heartbeat_at: w.heartbeat_at.toISOString(),
      })),
    },
    last_finished_at: heads.last_finished_at?.toISOString() ?? null,
    throughput: { '1m': window(0, 1), '5m': window(1, 5), '15m': window(2, 15) },
    now: heads.now.toISOString(),
  };
}
