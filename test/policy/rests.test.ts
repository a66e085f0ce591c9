import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nextPacificMidnightMs, UNHINTED_REST_CAP_MS, unhintedRestMs } from '../../src/policy/rests.ts';
import { decideRetry } from '../../src/policy/retry.ts';

/**
 * "Requests per day (RPD) quotas reset at midnight Pacific time"
 * (https://ai.google.dev/gemini-api/docs/rate-limits). US Pacific time is UTC−8 (PST) and UTC−7
 * (PDT); in 2026 DST runs from 8 March 02:00 to 1 November 02:00 local time (the second Sunday
 * of March and the first Sunday of November, 15 U.S.C. § 260a).
 */
describe('rests', () => {
  const next = (iso: string) => new Date(nextPacificMidnightMs(Date.parse(iso))).toISOString();

  it('a daily quota rests the key until the next midnight Pacific time, in PST and in PDT', () => {
    assert.equal(next('2026-11-24T12:00:00Z'), '2026-11-25T08:00:00.000Z'); // PST: 04:00 → 00:00 = 08:00Z
    assert.equal(next('2026-07-01T18:00:00Z'), '2026-07-02T07:00:00.000Z'); // PDT
    assert.equal(next('2026-11-24T07:59:59Z'), '2026-11-24T08:00:00.000Z'); // one second before
    assert.equal(next('2026-11-24T08:00:00Z'), '2026-11-25T08:00:00.000Z'); // at midnight: the next one
    assert.equal(next('2026-12-31T23:00:00Z'), '2027-01-01T08:00:00.000Z'); // over a year end
  });

  it('across the DST switches the local midnight moves by an hour in UTC', () => {
    assert.equal(next('2026-03-08T07:00:00Z'), '2026-03-08T08:00:00.000Z'); // 7 Mar 23:00 PST
    assert.equal(next('2026-03-08T12:00:00Z'), '2026-03-09T07:00:00.000Z'); // 8 Mar 05:00 PDT
    assert.equal(next('2026-11-01T06:30:00Z'), '2026-11-01T07:00:00.000Z'); // 31 Oct 23:30 PDT
    assert.equal(next('2026-11-01T12:00:00Z'), '2026-11-02T08:00:00.000Z'); // 1 Nov 04:00 PST
  });

  it('each hint-less 429 in a row doubles the rest, from the default up to an hour', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((n) => unhintedRestMs(n, 10_000)),
      [10_000, 20_000, 40_000, 80_000],
    );
    assert.equal(unhintedRestMs(20, 10_000), UNHINTED_REST_CAP_MS);
    assert.equal(unhintedRestMs(1000, 10_000), UNHINTED_REST_CAP_MS);
  });

  it('rate-limited retries stop at the bound, in count or in time', () => {
    const b = { baseMs: 1000, maxMs: 60_000, random: 0.5 };
    const h = { maxRetries: 3, maxWaitMs: 600_000 };
    assert.equal(decideRetry('rate_limited', 1, 3, b, { ...h, count: 3, sinceFirstMs: 0 }).action, 'retry');
    assert.deepEqual(decideRetry('rate_limited', 1, 3, b, { ...h, count: 4, sinceFirstMs: 0 }), {
      action: 'fail',
      reason: 'rate_limit_bound',
    });
    assert.deepEqual(decideRetry('rate_limited', 1, 3, b, { ...h, count: 1, sinceFirstMs: 600_001 }), {
      action: 'fail',
      reason: 'rate_limit_bound',
    });
  });
});
