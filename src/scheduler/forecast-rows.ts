import type { TaskForecastWrite } from '../store/forecasts.ts';

/**
 * Which of a forecast's task rows a pass writes (pure; src/scheduler/forecaster.ts persists them).
 *
 * A task thousands of places back has an ETA hours away: rewriting its row every second buys
 * nothing and, at 100,000 queued tasks, cost the database 300 ms a pass. So a pass writes
 *
 * - the head: every task whose position is below `headRows` (running tasks are at 0), always;
 * - every task the leader has not written yet (a newcomer still on its submit estimate, or every
 *   task after a leader change);
 * - tasks whose predicted finish moved by more than MOVE_FRACTION of their time to go, or whose
 *   basis changed (simulated ⇄ extrapolated), the biggest moves first, at most half of `tailRows`;
 * - the rest of `tailRows` from the tail rows written longest ago (ties: forecast order), so a
 *   queue that keeps its shape is refreshed whole every (tail ÷ that share) passes.
 *
 * Per pass at most headRows + tailRows rows plus the newcomers: bounded by the settings and the
 * submit rate, not by the queue. A tail row keeps the position and times of its last write; its
 * `forecast_at` says when that was (readers see the age, docs/api.md). Positions of a tail row
 * drift as the head drains (they count down by the tasks started since); its predicted times do
 * not drift (they are instants), and are rewritten when they move.
 */

/** A tail row is rewritten when its finish moved by more than this share of its time to go. */
export const MOVE_FRACTION = 0.1;
/** The time to go a move is compared with is at least this (ms): no churn near a task's end. */
const MIN_TO_GO_MS = 10_000;

/** What the leader remembers of a row it wrote. */
export interface RowMemo {
  finishMs: number;
  simulated: boolean;
  /** The pass that wrote it (a counter). */
  pass: number;
}

export interface RowLimits {
  headRows: number;
  tailRows: number;
}

export interface RowChoice {
  /** Indexes into the forecast's arrays, ascending. */
  indexes: number[];
  head: number;
  fresh: number;
  moved: number;
  rotated: number;
}

export function chooseRows(
  tasks: TaskForecastWrite,
  memo: ReadonlyMap<string, RowMemo>,
  nowMs: number,
  limits: RowLimits,
): RowChoice {
  const picked: number[] = [];
  const moved: { i: number; by: number }[] = [];
  const rest: number[] = [];
  let head = 0;
  let fresh = 0;
  for (let i = 0; i < tasks.ids.length; i++) {
    const prev = memo.get(tasks.ids[i]!);
    if (tasks.positions[i]! < limits.headRows) {
      picked.push(i);
      head++;
    } else if (!prev) {
      picked.push(i);
      fresh++;
    } else {
      const finish = tasks.finishMs[i]!;
      const toGo = Math.max(MIN_TO_GO_MS, finish - nowMs);
      const by =
        prev.simulated !== tasks.simulated[i]
          ? Number.POSITIVE_INFINITY
          : Math.abs(finish - prev.finishMs) / toGo;
      if (by > MOVE_FRACTION) moved.push({ i, by });
      else rest.push(i);
    }
  }
  moved.sort((a, b) => b.by - a.by || a.i - b.i);
  const movedTaken = Math.min(moved.length, Math.floor(limits.tailRows / 2));
  for (let k = 0; k < movedTaken; k++) picked.push(moved[k]!.i);
  for (let k = movedTaken; k < moved.length; k++) rest.push(moved[k]!.i);
  const rotate = Math.min(rest.length, limits.tailRows - movedTaken);
  if (rotate > 0) {
    const passOf = (i: number) => memo.get(tasks.ids[i]!)!.pass;
    rest.sort((a, b) => passOf(a) - passOf(b) || a - b);
    for (let k = 0; k < rotate; k++) picked.push(rest[k]!);
  }
  picked.sort((a, b) => a - b);
  return { indexes: picked, head, fresh, moved: movedTaken, rotated: rotate };
}

/** The rows of `tasks` at `indexes`. */
export function pickRows(tasks: TaskForecastWrite, indexes: readonly number[]): TaskForecastWrite {
  return {
    ids: indexes.map((i) => tasks.ids[i]!),
    positions: indexes.map((i) => tasks.positions[i]!),
    startMs: indexes.map((i) => tasks.startMs[i]!),
    finishMs: indexes.map((i) => tasks.finishMs[i]!),
    simulated: indexes.map((i) => tasks.simulated[i]!),
  };
}
