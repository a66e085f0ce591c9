import type { Config } from '../config/load.ts';
import { countsOf, failUnits, finishIfDone, jobFacts } from '../pipeline/transitions.ts';
import { afterFailure } from '../policy/lifecycle.ts';
import type { Db } from '../store/db.ts';
import {
  lockExpiredLeases,
  failJob,
  requeueJobs,
  requeueStaleAdmissions,
  type JobRow,
} from '../store/jobs.ts';
import { lockTask, type TaskRow } from '../store/tasks.ts';

const BATCH = 500;
const EXPIRED = 'transient: lease expired: the worker stopped answering';

export interface ReapResult {
  requeued: number;
  failed: number;
  unclaimed: number;
}

/**
 * One round of the lease reaper, set-based: the expired leases are locked in one statement
 * (expiry re-checked under the lock), those with attempts left go back to the queue in one
 * statement (with backoff, the attempt spent, as any transient failure), the rest fail with
 * their images and their tasks end, all in one transaction per batch of up to 500 jobs.
 * Admitted jobs nobody claimed in time go back to the queue too.
 */
export async function reapExpiredLeases(db: Db, config: Config, random: () => number): Promise<ReapResult> {
  const result: ReapResult = { requeued: 0, failed: 0, unclaimed: 0 };
  for (;;) {
    const round = await db.transaction(async (tx) => {
      const rows = await lockExpiredLeases(tx, BATCH);
      // Lock order everywhere: job rows, then task rows (transitions.ts).
      const tasks = new Map<string, TaskRow>();
      for (const taskId of [...new Set(rows.map((r) => r.task_id))].sort())
        tasks.set(taskId, (await lockTask(tx, taskId))!);
      const requeue: Array<{ id: string; delayMs: number }> = [];
      const fail: Array<{ row: JobRow; failsTask: boolean }> = [];
      for (const row of rows) {
        const task = tasks.get(row.task_id)!;
        // An expired lease is a transient failure: the attempt is spent.
        const outcome = afterFailure(countsOf(task), jobFacts(row), 'transient', {
          backoffBaseMs: config.worker.backoffBaseMs,
          backoffMaxMs: config.worker.backoffMaxMs,
          random: random(),
        });
        if (outcome.action === 'retry') requeue.push({ id: row.id, delayMs: outcome.delayMs });
        else fail.push({ row, failsTask: outcome.failsTask });
      }
      await requeueJobs(tx, requeue, EXPIRED);
      for (const { row, failsTask } of fail) {
        await failJob(tx, row.id, EXPIRED);
        await failUnits(tx, row, failsTask, `${row.step_name} failed: lease expired`);
      }
      for (const taskId of new Set(fail.map((f) => f.row.task_id))) await finishIfDone(tx, taskId);
      return { n: rows.length, requeued: requeue.length, failed: fail.length };
    });
    result.requeued += round.requeued;
    result.failed += round.failed;
    if (round.n < BATCH) break;
  }
  result.unclaimed = await db.transaction((tx) => requeueStaleAdmissions(tx, config.worker.leaseMs));
  return result;
}
