import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/load.ts';
import { submitEstimate } from '../../src/pipeline/estimate.ts';
import { SUBMIT_UNSEEN_LIMIT, type ActiveTask, type SubmitBasis } from '../../src/store/forecasts.ts';

/**
 * The estimate a submit answers before any forecast has seen its task (pure, O(1) in the queue).
 * Default configuration: the simulated provider at 3 s per call, 5 calls at once (its one key),
 * photography = beautify (1 call) → generate (batches of 5) → store (500 ms); plans Free 2,
 * Start 30, Pro 70 images, weight 1, short-work preference 0.5.
 */
const config = resolveConfig({ home: '/tmp/darkroom-estimate-test' }, {}, 'test');
const NOW = Date.UTC(2026, 0, 1);
const pro = { userId: 'me', type: 'photography', plan: 'pro', images: 70 };
const free = { userId: 'me', type: 'photography', plan: 'free', images: 2 };

function basis(active: ActiveTask[] = [], more: Partial<SubmitBasis> = {}): SubmitBasis {
  return { nowMs: NOW, queued: 0, active, summary: undefined, ...more };
}

function tasks(n: number, remaining: number, state: 'queued' | 'running' = 'running'): ActiveTask[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `t${i}`,
    user_id: `u${i}`,
    type: 'photography',
    weight: 1,
    state,
    remaining,
  }));
}

describe('submit estimate', () => {
  it('alone: starts now and takes its own service time', () => {
    const e = submitEstimate(config, pro, basis());
    assert.equal(e.position, 0);
    assert.equal(e.startAtMs, NOW);
    // beautify 3 s, then 14 batches in ⌈14 / 5⌉ = 3 waves of 3 s, then one store wave of 0.5 s.
    assert.equal(e.finishAtMs - NOW, 12_500);
  });

  it('beside nine other users’ Pro tasks: the provider does their work beside its own', () => {
    const e = submitEstimate(config, pro, basis(tasks(9, 70)));
    // Equal weights: each of the nine makes as many calls as the newcomer's 15 while it runs,
    // but has only 14 left: (15 + 9 × 14) calls × 3 s ÷ 5 at once, then its store wave.
    assert.equal(e.finishAtMs - NOW, 141 * 600 + 500);
    // Running tasks with one batch left share only that: (15 + 9) calls × 3 s ÷ 5 + 0.5 s.
    const small = submitEstimate(config, pro, basis(tasks(9, 2)));
    assert.equal(small.finishAtMs - NOW, 24 * 600 + 500);
  });

  it('a Free task among Pro users takes its own service time: its short work weighs more', () => {
    // Effective weight √(70 / 2) ≈ 5.9 against 1: the Pro users get ≈ 1/6.9 of the provider while
    // its 2 calls run, less than the waves it spends alone (beautify 3 s, 1 batch 3 s, store 0.5 s).
    const e = submitEstimate(config, free, basis(tasks(9, 70)));
    assert.equal(e.finishAtMs - NOW, 6500);
  });

  it('the queued rest of a burst that no forecast has seen shares the provider, not a queue ahead', () => {
    const e = submitEstimate(config, pro, basis(tasks(4, 70, 'queued'), { queued: 4 }));
    assert.equal(e.startAtMs, NOW);
    assert.equal(e.finishAtMs - NOW, (15 + 4 * 14) * 600 + 500);
  });

  it('its own user’s earlier tasks go first, inside its share', () => {
    const mine = { ...tasks(1, 70)[0]!, user_id: 'me' };
    const e = submitEstimate(config, pro, basis([mine]));
    assert.equal(e.finishAtMs - NOW, (15 + 14) * 600 + 500);
    // A retry's own (reopened) task is not its own competitor.
    const retry = submitEstimate(config, { ...pro, id: mine.id }, basis([mine]));
    assert.equal(retry.finishAtMs - NOW, 12_500);
  });

  it('behind the queue the last forecast saw: after its last predicted start, with measured service', () => {
    const e = submitEstimate(
      config,
      pro,
      basis([], {
        queued: 5,
        summary: {
          forecast_at: new Date(NOW - 1000),
          checked_at: new Date(NOW - 1000),
          queued: 4,
          tail_start_at: new Date(NOW + 20_000),
          complete: true,
          service_ms: { 'photography/pro': 6000 },
          per_task_ms: 5000,
        },
      }),
    );
    assert.equal(e.position, 5);
    // One spacing after the last start it saw.
    assert.equal(e.startAtMs - NOW, 25_000);
    assert.equal(e.finishAtMs - e.startAtMs, 6000);
  });

  it('unseen queued tasks past the read limit count as users like the newcomer', () => {
    const read = tasks(SUBMIT_UNSEEN_LIMIT, 70, 'queued');
    const e = submitEstimate(config, pro, basis(read, { queued: SUBMIT_UNSEEN_LIMIT + 100 }));
    // SUBMIT_UNSEEN_LIMIT read (14 calls each) and 100 more assumed (15 calls each, as much as its own).
    assert.equal(e.finishAtMs - NOW, (15 + SUBMIT_UNSEEN_LIMIT * 14 + 100 * 15) * 600 + 500);
  });

  describe('arrivals to come: as many as arrived within the horizon', () => {
    // A forecast 500 ms ago saw none of these tasks: the queued ones are the burst so far.
    const summary = {
      forecast_at: new Date(NOW - 500),
      checked_at: new Date(NOW - 500),
      queued: 0,
      tail_start_at: new Date(NOW - 500),
      complete: true,
      service_ms: {},
      per_task_ms: 0,
    };

    it('the fifth of a burst of equal Pro users expects four more, each over a uniform point of its run', () => {
      const e = submitEstimate(config, pro, basis(tasks(4, 70, 'queued'), { queued: 4, summary }));
      // Present: its 15 calls and the four others' 14 each, 71 calls (as without arrivals).
      // Each of four arrivals does min(14, 15·v) for v uniform: a = 15 > W = 14, so
      // 14 − 14² / 30 = 7.47 calls. (71 + 4 × 7.4667) calls × 3 s ÷ 5 + 0.5 s store wave.
      assert.equal(e.finishAtMs - NOW, Math.round((71 + 4 * (14 - 196 / 30)) * 600 + 500));
      // N equal users, the k-th answered about (1 + 1.5 (k − 1)) X ÷ c: here 61.0 s against the
      // 43.1 s of the present alone; in a burst of ten all would end after (15 + 9 × 14) × 0.6 s
      // + 0.5 s = 85.1 s (exact for the 7th, the first 1/10 of it, the last 1.45 times).
    });

    it('no arrivals from a forecast older than the answer without them, nor from running tasks or its own user', () => {
      const present = 71 * 600 + 500;
      const old = { ...summary, forecast_at: new Date(NOW - 60_000) };
      assert.equal(
        submitEstimate(config, pro, basis(tasks(4, 70, 'queued'), { queued: 4, summary: old })).finishAtMs -
          NOW,
        present,
      );
      assert.equal(submitEstimate(config, pro, basis(tasks(4, 70), { summary })).finishAtMs - NOW, present);
      const mine = tasks(4, 70, 'queued').map((t) => ({ ...t, user_id: 'me' }));
      assert.equal(
        submitEstimate(config, pro, basis(mine, { queued: 4, summary })).finishAtMs - NOW,
        (15 + 4 * 14) * 600 + 500,
      );
      // No forecast yet: the window cannot be bounded, so none either.
      assert.equal(
        submitEstimate(config, pro, basis(tasks(4, 70, 'queued'), { queued: 4 })).finishAtMs - NOW,
        present,
      );
    });
  });
});
