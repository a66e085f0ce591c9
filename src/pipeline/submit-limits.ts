import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import { judgeSubmit, windowStartMs } from '../policy/submit-limits.ts';
import type { Queryable } from '../store/db.ts';
import { countSubmit } from '../store/submit-write.ts';

/**
 * The per-user queued cap, the per-user and per-key submit rates and the queue bound, counted in
 * the submit transaction's last statement (after the charge has locked the user's row: counts are
 * exact across every API process) and judged here; a refused (or otherwise failed) submit rolls
 * its counts back with everything else. The per-user limits answer before the global bound.
 */
export async function enforceSubmitLimits(
  tx: Queryable,
  config: Config,
  who: { userId: string; keyId: string | null | undefined },
  now: Date,
): Promise<void> {
  const nowMs = now.getTime();
  const counts = await countSubmit(tx, who, new Date(windowStartMs(nowMs)), config.limits.maxQueuedTasks);
  const verdict = judgeSubmit(counts, config.limits, nowMs);
  if (!verdict.ok) {
    throw new AppError(verdict.code, verdict.message, { retryAfterSeconds: verdict.retryAfterSeconds });
  }
  if (counts.queuedAhead === undefined) {
    throw new AppError(
      'queue_full',
      `the queue holds ${config.limits.maxQueuedTasks} tasks, its limit; try again later`,
      { retryAfterSeconds: 30 },
    );
  }
}
