import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { Channels, notifyAtCommit } from '../store/db.ts';
import { confirmForecast, deleteForecasts, queueFingerprint, writeForecast } from '../store/forecasts.ts';
import { readForecastInput } from './forecast-input.ts';
import { chooseRows, pickRows, type RowMemo } from './forecast-rows.ts';
import type { ForecastOutput } from './forecast-run.ts';
import { createForecastThread, type ForecastThread } from './forecaster-thread.ts';

/**
 * The leader owns the queue forecast. After an admission pass the scheduler calls `afterPass()`;
 * at most once per interval the forecaster reads the queue (at most MAX_TASKS active tasks,
 * oldest first), has the forecast worker thread simulate it with the real decide(), and writes
 * forecast tasks' positions and predicted start and finish in one statement, then NOTIFYs the SSE
 * streams. API reads take one row per task (src/pipeline/estimate.ts). Not every row every pass:
 * the head (HEAD_ROWS), newcomers, rows that moved and a rotating share of the tail (TAIL_ROWS),
 * see src/scheduler/forecast-rows.ts; each row's `forecast_at` says when it was last written. The
 * leader remembers what it wrote (a new leader's first pass writes every row), and deletes the
 * rows of tasks it forecast before and not now (they ended).
 *
 * Cost control: a pass starts at least MIN_INTERVAL_MS after the previous one started, and at
 * least DUTY_FACTOR × its duration, so a huge queue does not keep the leader busy; when the
 * queue's fingerprint (newest event, queued count) has not moved, the queue is not read again,
 * the summary is only confirmed (`checked_at`), and a full pass is redone every REFRESH_MS while
 * work is in flight (never while nothing moves). The
 * simulation stops at BUDGET_MS; what it did not simulate is written as `extrapolated`.
 */
const MIN_INTERVAL_MS = 1000;
const DUTY_FACTOR = 4;
const REFRESH_MS = 60_000;
const CONFIRM_EVERY_MS = 5000;
const BUDGET_MS = 500;
export const FORECAST_MAX_TASKS = 20_000;
/**
 * Rows written every pass (the first tasks in forecast order) and the tail's share per pass
 * (rows that moved, then the least recently written). At 1,000 each a pass writes about 2,000
 * rows instead of up to FORECAST_MAX_TASKS, and the 19,000-task tail of a full forecast is
 * rewritten about every 20 passes (20 s or more): its ETAs are minutes to hours away.
 */
const HEAD_ROWS = 1000;
const TAIL_ROWS = 1000;

export interface ForecastPass {
  /** 'written': a new forecast; 'unchanged': nothing moved, the last one was confirmed. */
  outcome: 'written' | 'unchanged';
  tasks: number;
  /** Task rows written (head, newcomers, moved, rotated tail); 0 when unchanged. */
  rows: number;
  steps: number;
  durationMs: number;
}

export interface Forecaster {
  /**
   * Starts the forecast thread now and resolves when it is ready (the scheduler calls it as it
   * starts, so that the first pass after a burst does not wait for the simulator to compile).
   */
  warm(): Promise<void>;
  /** The scheduler's hook after an admission pass; returns at once. */
  afterPass(): void;
  /**
   * Runs a pass now (after any pass under way) and returns what it did (tests, benches); a full
   * one unless `force` is false, when it skips as the scheduler's passes do.
   */
  runNow(force?: boolean): Promise<ForecastPass>;
  stop(): Promise<void>;
}

const forecasters = new WeakMap<Context, Forecaster>();

/** The forecaster of this process's context (created on first use). */
export function forecasterFor(ctx: Context): Forecaster {
  let f = forecasters.get(ctx);
  if (!f) forecasters.set(ctx, (f = createForecaster(ctx)));
  return f;
}

export async function stopForecaster(ctx: Context): Promise<void> {
  await forecasters.get(ctx)?.stop();
  forecasters.delete(ctx);
}

export interface ForecasterOptions {
  /** The simulation's time budget per pass (ms); default BUDGET_MS. */
  budgetMs?: number;
  /** The clock of the refresh and confirmation intervals (tests); default Date.now. */
  now?: () => number;
  /** Rows written every pass (tests); default HEAD_ROWS. */
  headRows?: number;
  /** The tail's rows per pass (tests); default TAIL_ROWS. */
  tailRows?: number;
}

export function createForecaster(ctx: Context, options: ForecasterOptions = {}): Forecaster {
  const { db, config, log } = ctx;
  const thread: ForecastThread = createForecastThread(config);
  const budgetMs = options.budgetMs ?? BUDGET_MS;
  const now = options.now ?? Date.now;
  let requested = false;
  let running: Promise<ForecastPass> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let nextAllowedAt = 0;
  let lastFingerprint: string | undefined;
  let lastWrittenAt = 0;
  let lastConfirmedAt = 0;
  const limits = { headRows: options.headRows ?? HEAD_ROWS, tailRows: options.tailRows ?? TAIL_ROWS };
  // Every task of the last forecast and what was last written to its row.
  let written = new Map<string, RowMemo>();
  let passes = 0;

  async function pass(force: boolean): Promise<ForecastPass> {
    const started = performance.now();
    const { key: fingerprint, inFlight } = await queueFingerprint(db);
    // Unchanged and nothing in flight: the last forecast still holds, however long the queue
    // waits (an idle server does not re-read its backlog). With work in flight, time alone moves
    // it: redo it every REFRESH_MS even when no event arrived (a long silent call).
    const refreshDue = inFlight && now() - lastWrittenAt >= REFRESH_MS;
    if (!force && fingerprint === lastFingerprint && !refreshDue) {
      if (now() - lastConfirmedAt >= CONFIRM_EVERY_MS) {
        await confirmForecast(db);
        lastConfirmedAt = now();
      }
      return { outcome: 'unchanged', tasks: 0, rows: 0, steps: 0, durationMs: performance.now() - started };
    }
    const input = await readForecastInput(db, config, FORECAST_MAX_TASKS);
    const output: ForecastOutput = await thread.run(input, budgetMs);
    const { tasks } = output;
    const pass = ++passes;
    const choice = chooseRows(tasks, written, output.nowMs, limits);
    const next = new Map<string, RowMemo>();
    for (let i = 0; i < tasks.ids.length; i++) {
      const prev = written.get(tasks.ids[i]!);
      if (prev) next.set(tasks.ids[i]!, prev);
    }
    for (const i of choice.indexes)
      next.set(tasks.ids[i]!, { finishMs: tasks.finishMs[i]!, simulated: tasks.simulated[i]!, pass });
    const ended = [...written.keys()].filter((id) => !next.has(id));
    await db.transaction(async (tx) => {
      await writeForecast(tx, output.nowMs, pickRows(tasks, choice.indexes), output.summary);
      await deleteForecasts(tx, ended);
      await notifyAtCommit(tx, Channels.forecast);
    });
    written = next;
    lastFingerprint = fingerprint;
    lastWrittenAt = lastConfirmedAt = now();
    return {
      outcome: 'written',
      tasks: tasks.ids.length,
      rows: choice.indexes.length,
      steps: output.steps,
      durationMs: performance.now() - started,
    };
  }

  function start(force: boolean): Promise<ForecastPass> {
    const startedAt = performance.now();
    const startedAtMs = Date.now();
    const p = pass(force).finally(() => {
      const durationMs = performance.now() - startedAt;
      // Counted from the pass's start: a burst's tasks submitted during a pass get the next one
      // about a second after it began, not a second after it ended.
      nextAllowedAt = startedAtMs + Math.max(MIN_INTERVAL_MS, DUTY_FACTOR * durationMs);
      running = undefined;
      kick();
    });
    running = p;
    return p;
  }

  function kick(): void {
    if (stopped || running || !requested) return;
    const wait = nextAllowedAt - Date.now();
    if (wait > 0) {
      timer ??= setTimeout(() => {
        timer = undefined;
        kick();
      }, wait).unref();
      return;
    }
    requested = false;
    start(false).catch((error: unknown) => log.warn({ err: coerceError(error) }, 'forecast pass failed'));
  }

  return {
    warm: () => thread.warm(),
    afterPass() {
      requested = true;
      kick();
    },
    async runNow(force = true) {
      while (running) await running.catch(() => {});
      return start(force);
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running?.catch(() => {});
      await thread.close();
    },
  };
}
