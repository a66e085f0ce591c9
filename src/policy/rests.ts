/**
 * How long a rate-limited key rests when the provider does not say (pure; times passed in).
 *
 * - A per-day quota rests the key until the quota resets. Gemini: "Requests per day (RPD) quotas
 *   reset at midnight Pacific time" (https://ai.google.dev/gemini-api/docs/rate-limits).
 * - A 429 without a retry hint is not assumed to be a one-minute window: each such 429 in a row on
 *   the same key doubles its rest, from the provider's defaultRetryAfterMs up to an hour, so a key
 *   whose quota is gone for longer is not retried every few seconds all day.
 */

/** The longest rest a run of hint-less 429s earns: 1 h. */
export const UNHINTED_REST_CAP_MS = 3_600_000;

/** Rest after the (streak + 1)-th hint-less 429 in a row on a key. */
export function unhintedRestMs(streak: number, baseMs: number): number {
  return Math.min(UNHINTED_REST_CAP_MS, baseMs * 2 ** Math.min(30, Math.max(0, streak)));
}

const PACIFIC = 'America/Los_Angeles';

const pacificParts = new Intl.DateTimeFormat('en-US', {
  timeZone: PACIFIC,
  hourCycle: 'h23',
  year: 'numeric',
  month: 'numeric',
  day: 'numeric',
  hour: 'numeric',
  minute: 'numeric',
});

function partsAt(ms: number): { y: number; m: number; d: number; h: number; min: number } {
  const p = Object.fromEntries(pacificParts.formatToParts(ms).map((x) => [x.type, x.value]));
  return {
    y: Number(p.year),
    m: Number(p.month),
    d: Number(p.day),
    h: Number(p.hour),
    min: Number(p.minute),
  };
}

/**
 * The next midnight in the US Pacific time zone strictly after `nowMs` (epoch ms). Pacific time is
 * UTC−8 (PST) or UTC−7 (PDT); DST switches at 02:00, so each local midnight exists exactly once.
 */
export function nextPacificMidnightMs(nowMs: number): number {
  const today = partsAt(nowMs);
  // Tomorrow's local date, in UTC arithmetic (Date.UTC handles month and year ends).
  const tomorrow = new Date(Date.UTC(today.y, today.m - 1, today.d + 1));
  for (const offsetHours of [8, 7]) {
    const candidate = tomorrow.getTime() + offsetHours * 3_600_000;
    const at = partsAt(candidate);
    if (at.h === 0 && at.min === 0 && at.d === tomorrow.getUTCDate()) return candidate;
  }
  throw new Error(`no Pacific midnight found after ${new Date(nowMs).toISOString()}`);
}
