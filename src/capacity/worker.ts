import { parentPort } from 'node:worker_threads';
import { runSweep } from '../sim/sweep.ts';
import { metricValue } from '../sim/sweep.ts';
import type { CapacityJob } from './request.ts';
import type { ThreadMessage } from './thread.ts';

/**
 * The capacity planner's worker thread (started by src/capacity/thread.ts): runs the CLI's
 * `runSweep` on the job it is posted, posting each value's report as its run ends, so the
 * simulation never runs on the event loop that serves HTTP.
 */
const port = parentPort!;

port.once('message', (job: Omit<CapacityJob, 'source'>) => {
  const post = (m: ThreadMessage) => port.postMessage(m);
  try {
    const result = runSweep(job.config, job.scenario, job.sweep, job.targets, job.fixed, (row, index) =>
      post({
        type: 'row',
        index,
        row: {
          value: row.value,
          meets: row.meets ?? null,
          targets: job.targets.map((t) => ({
            target: t.text,
            value: metricValue(row.report, t.metric, t.plan),
          })),
          report: row.report,
        },
      }),
    );
    post({ type: 'done', best: result.best ?? null });
  } catch (error) {
    post({ type: 'error', message: error instanceof Error ? error.message : String(error) });
  }
});
