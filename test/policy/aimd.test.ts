import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { aimdOnRateLimit, aimdOnSuccess, type AimdSettings, type AimdState } from '../../src/policy/aimd.ts';

const s: AimdSettings = { cap: 8, increaseAfter: 3, decreaseFactor: 0.5 };
/** A 429 at `t` with a 1 s cool-down. */
const at = (t: number) => ({ nowMs: t, untilMs: t + 1000 });

describe('AIMD', () => {
  it('halves on a 429, never below 1', () => {
    let st: AimdState = { effectiveConcurrency: 8, successStreak: 2 };
    st = aimdOnRateLimit(st, s, at(0));
    assert.deepEqual(st, { effectiveConcurrency: 4, successStreak: 0, congestionUntilMs: 1000 });
    for (let i = 1; i <= 10; i++) st = aimdOnRateLimit(st, s, at(i * 2000));
    assert.equal(st.effectiveConcurrency, 1);
  });

  it('adds one after a run of successes, up to the cap', () => {
    let st: AimdState = { effectiveConcurrency: 2.5, successStreak: 0 };
    st = aimdOnSuccess(st, s);
    st = aimdOnSuccess(st, s);
    assert.equal(st.effectiveConcurrency, 2.5);
    st = aimdOnSuccess(st, s);
    assert.deepEqual(st, { effectiveConcurrency: 3, successStreak: 0 });
    for (let i = 0; i < 100; i++) st = aimdOnSuccess(st, s);
    assert.equal(st.effectiveConcurrency, 8);
  });

  it('a 429 in the middle of a streak resets it', () => {
    let st: AimdState = { effectiveConcurrency: 4, successStreak: 0 };
    st = aimdOnSuccess(aimdOnSuccess(st, s), s);
    st = aimdOnRateLimit(st, s, at(0));
    st = aimdOnSuccess(aimdOnSuccess(st, s), s);
    assert.equal(st.effectiveConcurrency, 2);
  });

  it('a storm of 429s inside one cool-down is one congestion event: one decrease (issue 9 item 8)', () => {
    // The chaos run's storm: 24 responses answering calls in flight together took 12 to 1.
    const cap: AimdSettings = { cap: 12, increaseAfter: 10, decreaseFactor: 0.5 };
    let st: AimdState = { effectiveConcurrency: 12, successStreak: 0 };
    for (let i = 0; i < 24; i++) st = aimdOnRateLimit(st, cap, { nowMs: i * 10, untilMs: i * 10 + 5000 });
    assert.equal(st.effectiveConcurrency, 6);
    // The next 429 after the event's cool-down is a new event.
    st = aimdOnRateLimit(st, cap, { nowMs: 5000, untilMs: 10_000 });
    assert.equal(st.effectiveConcurrency, 3);
  });

  it('decreases exactly once per congestion event, for any sequence of 429s and successes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gapMs: fc.integer({ min: 0, max: 3000 }),
            retryAfterMs: fc.integer({ min: 0, max: 4000 }),
            ok: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        fc.integer({ min: 1, max: 32 }),
        (events, cap) => {
          const settings: AimdSettings = { cap, increaseAfter: 1_000_000, decreaseFactor: 0.5 };
          let st: AimdState = { effectiveConcurrency: cap, successStreak: 0 };
          let now = 0;
          let eventEnd = Number.NEGATIVE_INFINITY;
          let expectedEvents = 0;
          for (const e of events) {
            now += e.gapMs;
            if (e.ok) {
              st = aimdOnSuccess(st, settings);
              continue;
            }
            // Reference: a 429 at or after the current event's end opens a new event.
            if (now >= eventEnd) {
              expectedEvents++;
              eventEnd = now + e.retryAfterMs;
            }
            st = aimdOnRateLimit(st, settings, { nowMs: now, untilMs: now + e.retryAfterMs });
          }
          assert.equal(st.effectiveConcurrency, Math.max(1, cap * 0.5 ** expectedEvents));
        },
      ),
      { numRuns: 300, seed: 8 },
    );
  });
});
