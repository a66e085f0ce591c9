import { finishIfDone } from '../pipeline/transitions.ts';
import type { Db } from '../store/db.ts';
import { cancelExpiredQueuedTasks } from '../store/schedule.ts';

const BATCH = 200;
const REASON = 'deadline_exceeded: no work started before the deadline';

/**
 * Cancels the queued tasks whose deadline passed before any of their work was admitted, in
 * batches: one statement marks a batch and cancels its jobs, then each task ends (fully
 * refunded: nothing was delivered) in the same transaction. Returns the ids canceled.
 */
export async function cancelMissedDeadlines(db: Db): Promise<string[]> {
  const all: string[] = [];
  for (;;) {
    const ids = await db.transaction(async (tx) => {
      const batch = await cancelExpiredQueuedTasks(tx, BATCH, REASON);
      for (const id of batch) await finishIfDone(tx, id);
      return batch;
    });
    all.push(...ids);
    if (ids.length < BATCH) return all;
  }
}
