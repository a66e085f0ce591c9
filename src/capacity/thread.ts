import { startModuleThread } from '../module-thread.ts';
import type { PlanReport } from '../sim/metrics.ts';
import type { CapacityJob } from './request.ts';

/** One swept value's result, as the API returns it (the CLI's `--json` row, plus target values). */
export interface CapacityRow {
  value: number;
  meets: boolean | null;
  /** Each target's metric for this value (seconds for times), as the CLI's sweep table shows it. */
  targets: Array<{ target: string; value: number }>;
  report: PlanReport;
}

export type ThreadMessage =
  | { type: 'row'; index: number; row: CapacityRow }
  | { type: 'done'; best: number | null }
  | { type: 'error'; message: string };

export type ThreadEnd =
  | { outcome: 'done'; best: number | null }
  | { outcome: 'failed'; message: string }
  | { outcome: 'timeout' }
  | { outcome: 'aborted' };

export interface ThreadRun {
  /** Settles when the thread is done, failed, over its budget or aborted; never rejects. */
  ended: Promise<ThreadEnd>;
  abort(): void;
}

/**
 * Runs a job in a new worker thread (src/capacity/worker.ts), reporting each row as it lands.
 * The thread is terminated once the job ends or after `budgetMs` of wall time, whichever is
 * first (src/module-thread.ts starts the .ts module through tsx, or the compiled .js).
 */
export function runInThread(
  job: CapacityJob,
  budgetMs: number,
  onRow: (index: number, row: CapacityRow) => void,
): ThreadRun {
  const worker = startModuleThread(import.meta.url, './worker.ts');
  worker.unref();
  let settle!: (end: ThreadEnd) => void;
  let settled = false;
  const ended = new Promise<ThreadEnd>((resolve) => (settle = resolve));
  const finish = (end: ThreadEnd) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    settle(end);
    void worker.terminate();
  };
  const timer = setTimeout(() => finish({ outcome: 'timeout' }), budgetMs);
  timer.unref();
  worker.on('message', (m: ThreadMessage) => {
    if (settled) return;
    if (m.type === 'row') onRow(m.index, m.row);
    else if (m.type === 'done') finish({ outcome: 'done', best: m.best });
    else finish({ outcome: 'failed', message: m.message });
  });
  worker.on('error', (error) => finish({ outcome: 'failed', message: error.message }));
  worker.on('exit', (code) => finish({ outcome: 'failed', message: `planner thread exited (code ${code})` }));
  const { source: _source, ...posted } = job;
  worker.postMessage(posted);
  return { ended, abort: () => finish({ outcome: 'aborted' }) };
}
