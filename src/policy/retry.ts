/**
 * Exponential backoff with full jitter (delay drawn uniformly from [0, min(max, base·2^(n-1))]),
 * so retries of many jobs failed at once spread out instead of returning together.
 * `random` is a number in [0, 1), passed in.
 */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random * ceiling);
}

export type OutcomeKind = 'success' | 'rate_limited' | 'transient' | 'timeout' | 'permanent';

export type RetryDecision =
  | { action: 'retry'; delayMs: number; spendsAttempt: boolean }
  | { action: 'fail'; reason?: 'rate_limit_bound' };

/**
 * How long a job may keep coming back rate-limited: `count` rate-limited outcomes so far (this one
 * included) and `sinceFirstMs` since the first of them, against the configured bounds.
 */
export interface RateLimitHistory {
  count: number;
  sinceFirstMs: number;
  maxRetries: number;
  maxWaitMs: number;
}

/** True once a job has been rate-limited more often or for longer than the bounds allow. */
export function rateLimitBoundReached(h: RateLimitHistory): boolean {
  return h.count > h.maxRetries || h.sinceFirstMs > h.maxWaitMs;
}

/**
 * What happens to a job after a failed call. Rate-limited calls go back to the queue without
 * spending an attempt (the key's cool-down holds them back) until the rate-limit bound is reached
 * (then the job fails, so a provider whose every key rests cannot keep a task cycling forever);
 * transient errors and timeouts retry with backoff while attempts remain; permanent errors fail
 * at once.
 */
export function decideRetry(
  kind: Exclude<OutcomeKind, 'success'>,
  attempts: number,
  maxAttempts: number,
  backoff: { baseMs: number; maxMs: number; random: number; retryAfterMs?: number | undefined },
  rateLimits?: RateLimitHistory,
): RetryDecision {
  if (kind === 'rate_limited') {
    if (rateLimits && rateLimitBoundReached(rateLimits))
      return { action: 'fail', reason: 'rate_limit_bound' };
    return { action: 'retry', delayMs: 0, spendsAttempt: false };
  }
  if (kind === 'permanent' || attempts >= maxAttempts) return { action: 'fail' };
  const jittered = backoffDelayMs(attempts, backoff.baseMs, backoff.maxMs, backoff.random);
  return { action: 'retry', delayMs: Math.max(jittered, backoff.retryAfterMs ?? 0), spendsAttempt: true };
}
