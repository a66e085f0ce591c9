import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { pruneIdempotencyKeys } from '../store/idempotency.ts';
import { pruneKeyRequests } from '../store/schedule.ts';
import { deleteUpload, findExpiredUploads } from '../store/uploads.ts';
import { pruneWorkers } from '../store/workers.ts';

const IDEMPOTENCY_KEY_HOURS = 24; // as Stripe: a key is remembered for a day

/** Drops what admission no longer needs: RPM log rows past the window, workers long silent. */
export async function pruneSchedulingState(ctx: Context, rpmWindowMs: number): Promise<void> {
  await pruneKeyRequests(ctx.db, rpmWindowMs);
  await pruneWorkers(ctx.db, Math.max(60_000, ctx.config.worker.leaseMs * 4));
}

/** Retention of finished work: expired uploads (and their files) and old idempotency keys. */
export async function applyRetention(ctx: Context): Promise<void> {
  const { db, config, log } = ctx;
  for (const upload of await findExpiredUploads(db, config.uploads.retentionHours, 500)) {
    await ctx.storage
      .delete(upload.storage_key)
      .catch((error: unknown) => log.warn({ err: coerceError(error) }, 'could not delete an upload file'));
    await deleteUpload(db, upload.id);
  }
  await pruneIdempotencyKeys(db, IDEMPOTENCY_KEY_HOURS);
}
