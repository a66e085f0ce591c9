import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { backoffDelayMs, decideRetry } from '../../src/policy/retry.ts';

describe('retry rules', () => {
  it('backoff is full jitter under min(max, base·2^(n-1))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (attempt, r) => {
          const d = backoffDelayMs(attempt, 1000, 60_000, r);
          assert.ok(d >= 0 && d <= Math.min(60_000, 1000 * 2 ** (attempt - 1)));
        },
      ),
    );
    assert.equal(backoffDelayMs(3, 1000, 60_000, 0.5), 2000);
  });

  it('a 429 goes back to the queue without spending an attempt, even on the last one', () => {
    assert.deepEqual(decideRetry('rate_limited', 3, 3, { baseMs: 1000, maxMs: 60_000, random: 0.5 }), {
      action: 'retry',
      delayMs: 0,
      spendsAttempt: false,
    });
  });

  it('transient errors and timeouts retry while attempts remain, then fail', () => {
    for (const kind of ['transient', 'timeout'] as const) {
      const r = decideRetry(kind, 1, 3, { baseMs: 1000, maxMs: 60_000, random: 0.5 });
      assert.equal(r.action, 'retry');
      assert.ok(r.action === 'retry' && r.spendsAttempt);
      assert.deepEqual(decideRetry(kind, 3, 3, { baseMs: 1000, maxMs: 60_000, random: 0.5 }), {
        action: 'fail',
      });
    }
  });

  it('permanent errors fail at once; a Retry-After sets a floor on the delay', () => {
    assert.deepEqual(decideRetry('permanent', 1, 3, { baseMs: 1000, maxMs: 60_000, random: 0.5 }), {
      action: 'fail',
    });
    const r = decideRetry('transient', 1, 3, { baseMs: 1000, maxMs: 60_000, random: 0, retryAfterMs: 7000 });
    assert.deepEqual(r, { action: 'retry', delayMs: 7000, spendsAttempt: true });
  });
});
