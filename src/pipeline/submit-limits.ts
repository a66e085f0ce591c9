import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import { judgeSubmit, windowStartMs } from '../policy/submit-limits.ts';
import type { Queryable } from '../store/db.ts';
import { countInWindow, countUserQueued } from '../store/rate-limits.ts';

/**
 * The per-user queued cap and the per-user and per-key submit rates, checked inside the submit
 * transaction after the charge has locked the user's row: counts are exact across every API
 * process, and a refused (or otherwise failed) submit rolls its counts back with everything else.
 */
export async function enforceSubmitLimits(
  tx: Queryable,
  config: Config,
  who: { userId: string; keyId: string | null | undefined },
  now: Date,
): Promise<void> {
  const nowMs = now.getTime();
  const windowStart = new Date(windowStartMs(nowMs));
  const userQueued = await countUserQueued(tx, who.userId);
  const userInWindow = await countInWindow(tx, `user:${who.userId}`, windowStart);
  const keyInWindow = who.keyId ? await countInWindow(tx, `key:${who.keyId}`, windowStart) : undefined;
  const verdict = judgeSubmit({ userQueued, userInWindow, keyInWindow }, config.limits, nowMs);
  if (!verdict.ok) {
    throw new AppError(verdict.code, verdict.message, { retryAfterSeconds: verdict.retryAfterSeconds });
  }
}
