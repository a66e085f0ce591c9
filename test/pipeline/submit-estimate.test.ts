import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/load.ts';
import { submitEstimate } from '../../src/pipeline/estimate.ts';

/**
 * The estimate a submit answers before any forecast has seen its task (pure, O(1) in the queue).
 * Default configuration: the simulated provider at 3 s per call, 5 calls at once (its one key),
 * photography = beautify (1 call) → generate (batches of 5) → store (500 ms).
 */
const config = resolveConfig({ home: '/tmp/darkroom-estimate-test' }, {}, 'test');
const NOW = Date.UTC(2026, 0, 1);
const pro = { type: 'photography', plan: 'pro', images: 70 };

describe('submit estimate', () => {
  it('alone: starts now and takes its own service time', () => {
    const e = submitEstimate(config, pro, {
      nowMs: NOW,
      queued: 0,
      runningRemaining: [],
      summary: undefined,
    });
    assert.equal(e.position, 0);
    assert.equal(e.startAtMs, NOW);
    // beautify 3 s, then 14 batches in ⌈14 / 5⌉ = 3 waves of 3 s, then one store wave of 0.5 s.
    assert.equal(e.finishAtMs - NOW, 12_500);
  });

  it('beside nine running Pro tasks: no sooner than the provider can do all ten tasks’ work', () => {
    const e = submitEstimate(config, pro, {
      nowMs: NOW,
      queued: 0,
      runningRemaining: Array.from({ length: 9 }, () => 70),
      summary: undefined,
    });
    // Under fair share each of the ten gets an equal share until it ends; all have as much work
    // as the new one, so it ends with the last: 10 × 15 calls × 3 s ÷ 5 at once = 90 s.
    assert.equal(e.finishAtMs - NOW, 90_000);
    // A running task with less left shares only what it has: 9 × 2 images + its 70.
    const small = submitEstimate(config, pro, {
      nowMs: NOW,
      queued: 0,
      runningRemaining: Array.from({ length: 9 }, () => 2),
      summary: undefined,
    });
    assert.ok(small.finishAtMs - NOW < 20_000 && small.finishAtMs - NOW >= 12_500);
  });

  it('behind queued tasks and no forecast yet: first come, first served', () => {
    const e = submitEstimate(config, pro, {
      nowMs: NOW,
      queued: 3,
      runningRemaining: [],
      summary: undefined,
    });
    assert.equal(e.position, 3);
    // Each queued task ahead: one Pro task's 15 calls × 3 s spread over 5.
    assert.equal(e.startAtMs - NOW, 27_000);
    assert.equal(e.finishAtMs - e.startAtMs, 12_500);
  });

  it('behind the queue the last forecast saw: after its last predicted start, with measured service', () => {
    const e = submitEstimate(config, pro, {
      nowMs: NOW,
      queued: 5,
      runningRemaining: [],
      summary: {
        forecast_at: new Date(NOW - 1000),
        checked_at: new Date(NOW - 1000),
        queued: 4,
        tail_start_at: new Date(NOW + 20_000),
        complete: true,
        service_ms: { 'photography/pro': 6000 },
        per_task_ms: 5000,
      },
    });
    // One spacing after the last start it saw, one more for the queued task it did not see.
    assert.equal(e.startAtMs - NOW, 30_000);
    assert.equal(e.finishAtMs - e.startAtMs, 6000);
  });
});
