import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { pruneIdempotencyKeys } from '../store/idempotency.ts';
import {
  deleteFinishedTasks,
  forgetGarbage,
  pruneFinishedTaskDetails,
  pruneResultCache,
  storageGarbage,
} from '../store/retention.ts';
import { pruneKeyRequests } from '../store/schedule.ts';
import { deleteUpload, findExpiredUploads } from '../store/uploads.ts';
import { pruneWorkers } from '../store/workers.ts';

const IDEMPOTENCY_KEY_HOURS = 24; // as Stripe: a key is remembered for a day
/** Batches one retention pass runs of each kind at most; the rest waits for the next pass. */
const MAX_BATCHES = 50;

/** Drops what admission no longer needs: RPM log rows past the window, workers long silent. */
export async function pruneSchedulingState(ctx: Context, rpmWindowMs: number): Promise<void> {
  await pruneKeyRequests(ctx.db, rpmWindowMs);
  await pruneWorkers(ctx.db, Math.max(60_000, ctx.config.worker.leaseMs * 4));
}

/** Runs `batch` until it handles fewer rows than a full batch (or MAX_BATCHES times); returns the total. */
async function inBatches(size: number, batch: () => Promise<number>): Promise<number> {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const n = await batch();
    total += n;
    if (n < size) break;
  }
  return total;
}

/**
 * Retention of finished work (docs/config.md `retention`): expired uploads and their files, old
 * idempotency keys, the events and jobs of tasks finished long ago, then those tasks themselves
 * with their images, old result cache entries, and last the files whose rows are gone. `now` is
 * the clock the windows are measured against (tests pass a later one).
 */
export async function applyRetention(ctx: Context, now: Date = new Date()): Promise<void> {
  const { db, config, log } = ctx;
  for (const upload of await findExpiredUploads(db, config.uploads.retentionHours, 500)) {
    await ctx.storage
      .delete(upload.storage_key)
      .catch((error: unknown) => log.warn({ err: coerceError(error) }, 'could not delete an upload file'));
    await deleteUpload(db, upload.id);
  }
  await pruneIdempotencyKeys(db, IDEMPOTENCY_KEY_HOURS);

  const r = config.retention;
  const size = r.batchSize;
  const removed = { taskDetails: 0, tasks: 0, cacheEntries: 0, files: 0 };
  if (r.taskDetailsHours > 0)
    removed.taskDetails = await inBatches(size, async () => {
      const pruned = await pruneFinishedTaskDetails(db, now, r.taskDetailsHours, size);
      return pruned.tasks;
    });
  if (r.finishedTaskHours > 0)
    removed.tasks = await inBatches(size, () => deleteFinishedTasks(db, now, r.finishedTaskHours, size));
  if (r.resultCacheHours > 0)
    removed.cacheEntries = await inBatches(size, () => pruneResultCache(db, now, r.resultCacheHours, size));
  removed.files = await removeGarbageFiles(ctx, size);
  if (removed.taskDetails + removed.tasks + removed.cacheEntries + removed.files > 0)
    log.info(removed, 'retention: finished work removed');
}

/** Deletes the files of rows retention removed; a file that cannot be deleted stays listed for the next pass. */
async function removeGarbageFiles(ctx: Context, size: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const keys = await storageGarbage(ctx.db, size);
    const gone: string[] = [];
    for (const key of keys) {
      try {
        await ctx.storage.delete(key);
        gone.push(key);
      } catch (error) {
        ctx.log.warn({ err: coerceError(error), key }, 'retention: could not delete a file; will retry');
      }
    }
    await forgetGarbage(ctx.db, gone);
    total += gone.length;
    if (keys.length < size || gone.length === 0) break;
  }
  return total;
}
