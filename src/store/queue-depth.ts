import type { Queryable } from './db.ts';

/**
 * Locks the queue counter (queue_depth) until the transaction ends. The lock order of every path
 * that meets a submit is queue_depth before any user's row (migration 0022): a transaction that
 * will move a queued task out of the queue, or into it, after locking a user's row takes the
 * counter first with this, or it deadlocks with a batch of submits that waits on that user.
 */
export async function lockQueueDepth(tx: Queryable): Promise<void> {
  await tx.query('SELECT 1 FROM queue_depth WHERE id = 1 FOR NO KEY UPDATE');
}
