import type pg from 'pg';
import type { FaultRecord } from './faults.ts';
import { TIMING } from './settings.ts';

export interface Liveness {
  /** Leader faults: time from the fault until a new term was taken (ms). */
  failovers: Array<{ kind: string; afterMs: number | null }>;
  /** Longest stretch with work outstanding and no job finishing (ms). */
  longestStallMs: number;
  /** The same, after taking out what the faults explain (ms). */
  longestUnexplainedStallMs: number;
  /** How long a stretch without progress may last that no fault explains (ms). */
  stallBoundMs: number;
  failoverBoundMs: number;
}

/**
 * A stretch without progress that no fault explains may last as long as one provider call may
 * (its timeout) plus one worker lease (a job whose worker went quiet is picked up again): past
 * that, something is stuck. A fault explains the time from its start to its end plus its own
 * recovery (recoveryMs: a lease to run out, a rest to pass).
 */
export const STALL_BOUND_MS = TIMING.providerTimeoutMs + TIMING.workerLeaseMs;

/**
 * A standby takes the lease once it has run out: at most one lease after the leader's last
 * renewal, which came at most a renewal period (a quarter lease) before the fault, plus the
 * standby's own renewal period. Twice the lease covers that with room for a loaded machine.
 */
export const FAILOVER_BOUND_MS = TIMING.leaderLeaseMs * 2;

type Fail = (invariant: string, detail: string) => void;

export async function livenessChecks(
  db: pg.Pool,
  tasks: Array<{ id: string; created_ms: number; finished_ms: number | null }>,
  faults: FaultRecord[],
  fail: Fail,
): Promise<Liveness> {
  const leaderLog = (
    await db.query<{ term: number; at_ms: number }>(
      'SELECT term::int AS term, (extract(epoch FROM at) * 1000)::float8 AS at_ms FROM chaos_leader_log ORDER BY id',
    )
  ).rows;
  const failovers: Liveness['failovers'] = [];
  for (const f of faults.filter((x) => x.kind === 'leader_kill' || x.kind === 'leader_stop')) {
    const before = leaderLog.filter((r) => r.at_ms <= f.start).at(-1);
    const next = leaderLog.find((r) => r.at_ms > f.start && r.term > (before?.term ?? 0));
    const afterMs = next ? Math.round(next.at_ms - f.start) : null;
    failovers.push({ kind: f.kind, afterMs });
    if (afterMs === null)
      fail('failover within the lease', `${f.label} at ${new Date(f.start).toISOString()}: no new term`);
    else if (afterMs > FAILOVER_BOUND_MS)
      fail(
        'failover within the lease',
        `${f.label}: a new term after ${afterMs} ms > ${FAILOVER_BOUND_MS} ms`,
      );
  }

  const progress = (
    await db.query<{ at_ms: number }>(
      `SELECT (extract(epoch FROM at) * 1000)::float8 AS at_ms FROM chaos_job_log
        WHERE new_state IN ('succeeded', 'failed', 'canceled') ORDER BY at`,
    )
  ).rows.map((r) => r.at_ms);
  const busy = mergeIntervals(
    tasks.map((t) => [t.created_ms, t.finished_ms ?? Number.POSITIVE_INFINITY] as [number, number]),
  );
  const explained = mergeIntervals(faults.map((f) => [f.start, f.end + f.recoveryMs] as [number, number]));
  const stalls = stallsOf(progress, busy, explained);
  for (const s of stalls.unexplained)
    fail(
      'no stall the faults do not explain',
      `${Math.round(s.unexplainedMs)} ms without a job ending (of a ${Math.round(s.busyMs)} ms stretch from ${new Date(s.from).toISOString()}), bound ${STALL_BOUND_MS} ms`,
    );
  return {
    failovers,
    longestStallMs: Math.round(stalls.longestMs),
    longestUnexplainedStallMs: Math.round(stalls.longestUnexplainedMs),
    stallBoundMs: STALL_BOUND_MS,
    failoverBoundMs: FAILOVER_BOUND_MS,
  };
}

/**
 * Stretches between successive progress marks (a job ending), counting only time when some task
 * was outstanding (`busy`), and the part of each that no fault window (`explained`) covers.
 */
export function stallsOf(
  progress: number[],
  busy: Array<[number, number]>,
  explained: Array<[number, number]>,
): {
  longestMs: number;
  longestUnexplainedMs: number;
  unexplained: Array<{ from: number; busyMs: number; unexplainedMs: number }>;
} {
  let longestStallMs = 0;
  let longestUnexplainedStallMs = 0;
  const found: Array<{ from: number; busyMs: number; unexplainedMs: number }> = [];
  const first = busy[0]?.[0];
  if (first !== undefined) {
    const marks = [first, ...progress.filter((p) => p > first)];
    const lastBusy = busy.at(-1)![1];
    if (Number.isFinite(lastBusy) && lastBusy > marks.at(-1)!) marks.push(lastBusy);
    for (let i = 1; i < marks.length; i++) {
      const gap: [number, number] = [marks[i - 1]!, marks[i]!];
      const busyPart = intersectLength(gap, busy);
      const unexplained = busyPart - intersectLength(gap, intersect(busy, explained));
      longestStallMs = Math.max(longestStallMs, busyPart);
      if (unexplained > longestUnexplainedStallMs) longestUnexplainedStallMs = unexplained;
      if (unexplained > STALL_BOUND_MS)
        found.push({ from: gap[0], busyMs: busyPart, unexplainedMs: unexplained });
    }
  }
  return { longestMs: longestStallMs, longestUnexplainedMs: longestUnexplainedStallMs, unexplained: found };
}

export function mergeIntervals(list: Array<[number, number]>): Array<[number, number]> {
  const sorted = list.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const [a, b] of sorted) {
    const last = out.at(-1);
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

function intersect(a: Array<[number, number]>, b: Array<[number, number]>): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [a0, a1] of a)
    for (const [b0, b1] of b) {
      const lo = Math.max(a0, b0);
      const hi = Math.min(a1, b1);
      if (hi > lo) out.push([lo, hi]);
    }
  return mergeIntervals(out);
}

function intersectLength(gap: [number, number], set: Array<[number, number]>): number {
  let total = 0;
  for (const [a, b] of set) total += Math.max(0, Math.min(gap[1], b) - Math.max(gap[0], a));
  return total;
}
