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

export type RetryDecision = { action: 'retry'; delayMs: number; spendsAttempt: boolean } | { action: 'fail' };

/**
 * What happens to a job after a failed call. Rate-limited calls go back to the queue without
 * spending an attempt (the key's cool-down holds them back); transient errors and timeouts
 * retry with backoff while attempts remain; permanent errors fail at once.
 */
export function decideRetry(
  kind: Exclude<OutcomeKind, 'success'>,
  attempts: number,
  maxAttempts: number,
  backoff: { baseMs: number; maxMs: number; random: number; retryAfterMs?: number | undefined },
): RetryDecision {
  if (kind === 'rate_limited') return { action: 'retry', delayMs: 0, spendsAttempt: false };
  if (kind === 'permanent' || attempts >= maxAttempts) return { action: 'fail' };
  const jittered = backoffDelayMs(attempts, backoff.baseMs, backoff.maxMs, backoff.random);
  return { action: 'retry', delayMs: Math.max(jittered, backoff.retryAfterMs ?? 0), spendsAttempt: true };
}
