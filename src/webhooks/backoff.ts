/**
 * When to try a failed delivery again: exponential from `baseMs` (×4 per attempt) up to
 * `maxMs`, with ±20 % jitter, and no retry once the next attempt would fall past `maxAgeMs`
 * after the delivery was created (the Standard Webhooks guidance: retry for about a day).
 * Pure: the caller passes the clock and the random draw.
 */
export function nextRetryMs(opts: {
  attempts: number;
  ageMs: number;
  baseMs: number;
  maxMs: number;
  maxAgeMs: number;
  random: number;
}): number | undefined {
  const exp = Math.min(opts.maxMs, opts.baseMs * 4 ** Math.max(0, opts.attempts - 1));
  const delay = Math.round(exp * (0.8 + 0.4 * opts.random));
  return opts.ageMs + delay > opts.maxAgeMs ? undefined : delay;
}
