import type { Queryable } from './db.ts';

/**
 * Cluster-wide counters and histograms kept by triggers (migration 0005): append-only deltas
 * folded into totals by the scheduler leader. Every process reads the same figures.
 */

/** Bucket upper bounds (seconds) of the task histograms; the migration's triggers use the same. */
export const TASK_SECONDS_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600];
/** Bucket upper bounds (seconds) of the job histograms. */
export const JOB_SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300];

export interface CounterRow {
  name: string;
  labels: Record<string, string>;
  /** The count (events, or observations of a histogram bucket). */
  n: number;
  /** The summed value (histogram sums, credits, images). */
  v: number;
}

const READ_COUNTERS = /* sql */ `
  SELECT name, labels, sum(n)::float8 AS n, sum(v)::float8 AS v FROM (
    SELECT name, labels, n, v FROM stat_totals WHERE name = ANY($1::text[])
    UNION ALL
    SELECT name, labels, n, v FROM stat_deltas WHERE name = ANY($1::text[])
  ) s GROUP BY name, labels`;

/** The current value of the named series, in one statement (a consistent snapshot). */
export async function readCounters(q: Queryable, names: readonly string[]): Promise<CounterRow[]> {
  const { rows } = await q.query<{ name: string; labels: string; n: number; v: number }>(READ_COUNTERS, [
    names,
  ]);
  return rows.map((r) => ({
    name: r.name,
    labels: JSON.parse(r.labels) as Record<string, string>,
    n: Number(r.n),
    v: Number(r.v),
  }));
}

/**
 * Folds the deltas into the totals; returns how many deltas were folded. One statement: rows
 * appended while it runs are not in its snapshot and stay for the next fold.
 */
export async function compactCounters(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ folded: number }>(
    `WITH moved AS (DELETE FROM stat_deltas RETURNING name, labels, n, v),
          summed AS (SELECT name, labels, sum(n) AS n, sum(v) AS v, count(*) AS c FROM moved GROUP BY name, labels),
          upserted AS (
            INSERT INTO stat_totals (name, labels, n, v) SELECT name, labels, n, v FROM summed
            ON CONFLICT (name, labels) DO UPDATE SET n = stat_totals.n + EXCLUDED.n, v = stat_totals.v + EXCLUDED.v
            RETURNING 1)
     SELECT COALESCE((SELECT sum(c) FROM summed), 0)::int AS folded, (SELECT count(*) FROM upserted) AS u`,
  );
  return rows[0]?.folded ?? 0;
}
