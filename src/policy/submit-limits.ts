/**
 * Submit limits, decided from counts the store read under lock (pure: the clock is a parameter).
 * Rates use fixed windows of WINDOW_MS: a counter row per user or key whose window start is the
 * current minute; it resets when the minute moves on.
 */
export const SUBMIT_WINDOW_MS = 60_000;

export function windowStartMs(nowMs: number, windowMs = SUBMIT_WINDOW_MS): number {
  return nowMs - (((nowMs % windowMs) + windowMs) % windowMs);
}

/** Whole seconds until the window that holds `nowMs` ends (at least 1). */
export function secondsToWindowEnd(nowMs: number, windowMs = SUBMIT_WINDOW_MS): number {
  return Math.max(1, Math.ceil((windowStartMs(nowMs, windowMs) + windowMs - nowMs) / 1000));
}

export type SubmitLimitVerdict =
  | { ok: true }
  | { ok: false; code: 'rate_limited' | 'user_queue_full'; message: string; retryAfterSeconds: number };

export interface SubmitCounts {
  /** This user's queued tasks, the new one included. */
  userQueued: number;
  /** Submits in the current window, the new one included. */
  userInWindow: number;
  /** The key's submits in the current window (the new one included); undefined without a key. */
  keyInWindow: number | undefined;
}

export interface SubmitLimitSettings {
  perUserQueuedTasks: number;
  userSubmitsPerMinute: number;
  keySubmitsPerMinute: number;
}

/** Once a user has this many tasks waiting, a new one waits longer than this; 10 s is a polite retry. */
const QUEUE_FULL_RETRY_SECONDS = 10;

export function judgeSubmit(
  counts: SubmitCounts,
  limits: SubmitLimitSettings,
  nowMs: number,
): SubmitLimitVerdict {
  if (counts.userQueued > limits.perUserQueuedTasks) {
    return {
      ok: false,
      code: 'user_queue_full',
      message: `this user already has ${limits.perUserQueuedTasks} queued tasks (limits.perUserQueuedTasks); wait for one to start`,
      retryAfterSeconds: QUEUE_FULL_RETRY_SECONDS,
    };
  }
  if (counts.userInWindow > limits.userSubmitsPerMinute) {
    return {
      ok: false,
      code: 'rate_limited',
      message: `this user submitted ${limits.userSubmitsPerMinute} tasks this minute (limits.userSubmitsPerMinute)`,
      retryAfterSeconds: secondsToWindowEnd(nowMs),
    };
  }
  if (counts.keyInWindow !== undefined && counts.keyInWindow > limits.keySubmitsPerMinute) {
    return {
      ok: false,
      code: 'rate_limited',
      message: `this API key submitted ${limits.keySubmitsPerMinute} tasks this minute (limits.keySubmitsPerMinute)`,
      retryAfterSeconds: secondsToWindowEnd(nowMs),
    };
  }
  return { ok: true };
}
