import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aimdOnRateLimit, aimdOnSuccess, type AimdSettings } from '../../src/policy/aimd.ts';

const s: AimdSettings = { cap: 8, increaseAfter: 3, decreaseFactor: 0.5 };

describe('AIMD', () => {
  it('halves on a 429, never below 1', () => {
    let st = { effectiveConcurrency: 8, successStreak: 2 };
    st = aimdOnRateLimit(st, s);
    assert.deepEqual(st, { effectiveConcurrency: 4, successStreak: 0 });
    for (let i = 0; i < 10; i++) st = aimdOnRateLimit(st, s);
    assert.equal(st.effectiveConcurrency, 1);
  });

  it('adds one after a run of successes, up to the cap', () => {
    let st = { effectiveConcurrency: 2.5, successStreak: 0 };
    st = aimdOnSuccess(st, s);
    st = aimdOnSuccess(st, s);
    assert.equal(st.effectiveConcurrency, 2.5);
    st = aimdOnSuccess(st, s);
    assert.deepEqual(st, { effectiveConcurrency: 3, successStreak: 0 });
    for (let i = 0; i < 100; i++) st = aimdOnSuccess(st, s);
    assert.equal(st.effectiveConcurrency, 8);
  });

  it('a 429 in the middle of a streak resets it', () => {
    let st = { effectiveConcurrency: 4, successStreak: 0 };
    st = aimdOnSuccess(aimdOnSuccess(st, s), s);
    st = aimdOnRateLimit(st, s);
    st = aimdOnSuccess(aimdOnSuccess(st, s), s);
    assert.equal(st.effectiveConcurrency, 2);
  });
});
