import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import { judgeSubmit, windowStartMs } from '../policy/submit-limits.ts';
import type { SubmitCounts, SubmitWrite } from '../store/submit-write.ts';

/**
 * The per-user queued cap, the per-user and per-key submit rates and the queue bound are counted
 * by the submit's own statement (src/store/submit-write.ts: after the charge has locked the
 * user's row, so counts are exact across every API process), which refuses and rolls everything
 * back when one is exceeded. These are the limits it is given, and the answer for a refusal.
 */
export function submitLimits(
  config: Config,
  who: { userId: string; keyId: string | null | undefined },
  now: Date,
): Pick<SubmitWrite, 'buckets' | 'windowStart' | 'limits'> {
  const l = config.limits;
  return {
    buckets: who.keyId ? [`user:${who.userId}`, `key:${who.keyId}`] : [`user:${who.userId}`],
    windowStart: new Date(windowStartMs(now.getTime())),
    limits: {
      maxQueued: l.maxQueuedTasks,
      perUserQueued: l.perUserQueuedTasks,
      userPerMinute: l.userSubmitsPerMinute,
      keyPerMinute: l.keySubmitsPerMinute,
    },
  };
}

/** The error for a submit the database refused on `counts`. The per-user limits answer before the global bound. */
export function refusal(config: Config, counts: SubmitCounts, now: Date): AppError {
  const verdict = judgeSubmit(counts, config.limits, now.getTime());
  if (!verdict.ok) {
    return new AppError(verdict.code, verdict.message, { retryAfterSeconds: verdict.retryAfterSeconds });
  }
  if (counts.queuedAhead === undefined) {
    return new AppError(
      'queue_full',
      `the queue holds ${config.limits.maxQueuedTasks} tasks, its limit; try again later`,
      { retryAfterSeconds: 30 },
    );
  }
  return new AppError('internal', 'the submit was refused on counts within its limits');
}
