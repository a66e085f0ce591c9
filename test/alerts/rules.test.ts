import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluateRules, type AlertRules, type AlertSnapshot } from '../../src/alerts/rules.ts';
import { resolveConfig } from '../../src/config/load.ts';

/** The defaults are the source documents' thresholds; each fires strictly above its bound. */
describe('alert rules', () => {
  const rules: AlertRules = resolveConfig({}, {}, 'test').alerts.rules;
  const quiet: AlertSnapshot = {
    nowMs: 1_000_000,
    queued: 50,
    longestRunning: { taskId: 't', startedMs: 1_000_000 - 180_000 },
    errorWindow: [{ provider: 'p', calls: 100, errors: 10, rateLimited: 5 }],
    rateLimitWindow: [{ provider: 'p', calls: 100, errors: 10, rateLimited: 5 }],
    liveWorkers: 1,
  };

  it('defaults to queued > 50, errors > 10 % over 5 min, running > 180 s, 429s > 5 %, no live worker', () => {
    assert.equal(rules.queued.threshold, 50);
    assert.equal(rules.providerErrorRate.threshold, 0.1);
    assert.equal(rules.providerErrorRate.windowSeconds, 300);
    assert.equal(rules.taskRunning.thresholdSeconds, 180);
    assert.equal(rules.rateLimitRate.threshold, 0.05);
    assert.equal(rules.noLiveWorker.enabled, true);
  });

  it('stays quiet exactly at every threshold and fires just past it', () => {
    assert.deepEqual(evaluateRules(rules, quiet), []);
    const loud: AlertSnapshot = {
      ...quiet,
      queued: 51,
      longestRunning: { taskId: 't', startedMs: 1_000_000 - 181_000 },
      errorWindow: [{ provider: 'p', calls: 100, errors: 11, rateLimited: 0 }],
      rateLimitWindow: [{ provider: 'p', calls: 100, errors: 0, rateLimited: 6 }],
      liveWorkers: 0,
    };
    const fired = evaluateRules(rules, loud)
      .map((c) => `${c.rule}:${c.key}`)
      .sort();
    assert.deepEqual(fired, [
      'noLiveWorker:',
      'providerErrorRate:p',
      'queued:',
      'rateLimitRate:p',
      'taskRunning:',
    ]);
  });

  it('ignores a window with fewer calls than minCalls, and disabled rules', () => {
    const few: AlertSnapshot = {
      ...quiet,
      errorWindow: [{ provider: 'p', calls: 9, errors: 9, rateLimited: 9 }],
    };
    assert.deepEqual(evaluateRules(rules, few), []);
    const off = { ...rules, noLiveWorker: { enabled: false } };
    assert.deepEqual(evaluateRules(off, { ...quiet, liveWorkers: 0 }), []);
  });
});
