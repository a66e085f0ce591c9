import { randomUUID } from 'node:crypto';
import { AppError } from '../errors.ts';
import type { CapacityJob } from './request.ts';
import { runInThread, type CapacityRow, type ThreadEnd, type ThreadRun } from './thread.ts';

/**
 * Capacity runs of this process: at most one running at a time (a second start is refused with
 * `planner_busy`), each on its own worker thread with a wall-time budget; the last KEEP runs
 * stay readable. Runs live in memory only: they are cheap to redo and belong to the process
 * that ran them.
 */

export const DEFAULT_BUDGET_MS = 60_000;
const KEEP = 10;

export type RunState = 'running' | 'succeeded' | 'failed';

export interface CapacityRunView {
  id: string;
  state: RunState;
  created_at: string;
  finished_at: string | null;
  scenario: { source: string; name: string };
  sweep: { name: string; values: number[] };
  targets: string[];
  set: Record<string, number>;
  progress: { done: number; total: number };
  /** Rows in sweep order, as each value's run ends (on failure: those that ended). */
  rows: CapacityRow[];
  /** The smallest value meeting every target; null when none does, or no target was given. */
  best: number | null;
  error: { code: 'plan_timeout' | 'plan_failed' | 'plan_aborted'; message: string } | null;
}

export interface CapacityRunner {
  start(job: CapacityJob): CapacityRunView;
  get(id: string): CapacityRunView | undefined;
  /** Newest first. */
  list(): CapacityRunView[];
  /** Settles when the run ends (tests). */
  settled(id: string): Promise<CapacityRunView | undefined>;
  close(): Promise<void>;
}

export interface RunnerOptions {
  budgetMs?: number;
  now?: () => Date;
}

export function createCapacityRunner(options: RunnerOptions = {}): CapacityRunner {
  const budgetMs = options.budgetMs ?? DEFAULT_BUDGET_MS;
  const now = options.now ?? (() => new Date());
  const runs = new Map<string, { view: CapacityRunView; thread?: ThreadRun; ended: Promise<unknown> }>();
  let current: string | undefined;
  let closed = false;

  function end(view: CapacityRunView, result: ThreadEnd): void {
    view.finished_at = now().toISOString();
    if (result.outcome === 'done') {
      view.state = 'succeeded';
      view.best = result.best;
    } else {
      view.state = 'failed';
      view.error =
        result.outcome === 'timeout'
          ? {
              code: 'plan_timeout',
              message: `the run took longer than ${Math.round(budgetMs / 1000)} s; sweep fewer values or a shorter scenario (darkroom plan has no limit)`,
            }
          : result.outcome === 'aborted'
            ? { code: 'plan_aborted', message: 'the server stopped during the run' }
            : { code: 'plan_failed', message: result.message };
    }
    if (current === view.id) current = undefined;
  }

  function prune(): void {
    const ids = [...runs.keys()];
    for (const id of ids.slice(0, Math.max(0, ids.length - KEEP))) if (id !== current) runs.delete(id);
  }

  return {
    start(job) {
      if (closed) throw new AppError('planner_busy', 'the server is stopping');
      if (current) {
        throw new AppError(
          'planner_busy',
          `capacity run ${current} is running; one runs at a time (GET /v1/admin/capacity/runs/${current})`,
          { retryAfterSeconds: 5 },
        );
      }
      const view: CapacityRunView = {
        id: `cap_${randomUUID()}`,
        state: 'running',
        created_at: now().toISOString(),
        finished_at: null,
        scenario: { source: job.source, name: job.scenario.name ?? job.source },
        sweep: { name: job.sweep.name, values: job.sweep.values },
        targets: job.targets.map((t) => t.text),
        set: job.fixed,
        progress: { done: 0, total: job.sweep.values.length },
        rows: [],
        best: null,
        error: null,
      };
      const thread = runInThread(job, budgetMs, (index, row) => {
        view.rows[index] = row;
        view.progress.done = view.rows.filter(Boolean).length;
      });
      current = view.id;
      const ended = thread.ended.then((result) => end(view, result));
      runs.set(view.id, { view, thread, ended });
      prune();
      return view;
    },
    get: (id) => runs.get(id)?.view,
    list: () => [...runs.values()].map((r) => r.view).reverse(),
    async settled(id) {
      await runs.get(id)?.ended;
      return runs.get(id)?.view;
    },
    async close() {
      closed = true;
      const running = current ? runs.get(current) : undefined;
      running?.thread?.abort();
      await running?.ended;
    },
  };
}
