import type { Queryable } from '../store/db.ts';
import { minuteSeries, type PercentileBucket } from '../store/latency.ts';

interface PercentilePoint {
  at: string;
  n: number;
  p50_seconds: number;
  p95_seconds: number;
}

/** What `GET /v1/admin/stats/series` answers: the last hour, per minute (src/store/latency.ts). */
export interface SeriesView {
  bucket_seconds: 60;
  from: string;
  to: string;
  /** Created → started, by the minute the task started. */
  queue_wait: PercentilePoint[];
  /** Created → finished of succeeded and partial tasks, by the minute they finished. */
  completion: PercentilePoint[];
  /** Tasks that ended (any outcome) and their images, by the minute they ended. */
  finished: Array<{ at: string; tasks: number; images: number }>;
  /** Tasks queued at the start of every minute of the window, by plan. */
  queued_by_plan: PlanPoint[];
  /** Tasks running at the start of every minute of the window, by plan. */
  running_by_plan: PlanPoint[];
}

interface PlanPoint {
  at: string;
  plans: Record<string, number>;
}

const point = (b: PercentileBucket): PercentilePoint => ({
  at: b.at.toISOString(),
  n: b.n,
  p50_seconds: b.p50,
  p95_seconds: b.p95,
});

export async function collectSeries(q: Queryable, at?: Date): Promise<SeriesView> {
  const s = await minuteSeries(q, at);
  return {
    bucket_seconds: 60,
    from: s.from.toISOString(),
    to: s.to.toISOString(),
    queue_wait: s.queueWait.map(point),
    completion: s.completion.map(point),
    finished: s.finished.map((b) => ({ at: b.at.toISOString(), tasks: b.tasks, images: b.images })),
    queued_by_plan: s.active.map((p) => ({ at: p.at.toISOString(), plans: p.queued })),
    running_by_plan: s.active.map((p) => ({ at: p.at.toISOString(), plans: p.running })),
  };
}
