import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  arrivalShare,
  callsPerSecond,
  estimateEtaSeconds,
  fairShareWork,
  serviceSeconds,
  type Sharer,
} from '../../src/policy/estimate.ts';

/**
 * Weighted processor sharing played out phase by phase, written without the closed form: each
 * phase gives every user with work left capacity in proportion to its weight until the next one
 * finishes. Returns the work done by all when user 0 finishes (capacity 1: also the time).
 */
function gpsByPhases(users: Sharer[]): number {
  const left = users.map((u) => u.work);
  let time = 0;
  for (;;) {
    if (left[0]! <= 1e-12) return time;
    const active = users.map((_, i) => i).filter((i) => left[i]! > 1e-12 && users[i]!.weight > 0);
    const totalWeight = active.reduce((n, i) => n + users[i]!.weight, 0);
    // The phase lasts until the first active user runs out at its rate weight / totalWeight.
    const dt = Math.min(...active.map((i) => (left[i]! * totalWeight) / users[i]!.weight));
    for (const i of active) left[i] = left[i]! - (dt * users[i]!.weight) / totalWeight;
    time += dt;
  }
}

const provider = { concurrency: 5, rpm: 600, meanCallMs: 8000 };

describe('ETA estimates', () => {
  it('throughput is the smaller of concurrency ÷ latency and RPM', () => {
    assert.equal(callsPerSecond(provider), 5 / 8);
    assert.equal(callsPerSecond({ concurrency: 60, rpm: 45, meanCallMs: 8000 }), 45 / 60);
  });

  it('a Pro task alone: beautify, then 14 batches over 5 slots in 3 waves, then a store wave (document 02 corrected)', () => {
    const pro = { calls: 15, serialCalls: 1, storeUnits: 70, storeConcurrency: 10, meanStoreMs: 2000 };
    // 8 s + 3 × 8 s + 2 s, not 163 s
    assert.equal(serviceSeconds(pro, provider), 34);
    assert.equal(estimateEtaSeconds(0, pro, provider), 34);
    assert.equal(estimateEtaSeconds(50, pro, provider), 34 + 80);
  });
});

describe('fair share of a provider (fairShareWork)', () => {
  it('document 02: ten Pro users at once, 70 images in batches of 5, 8 s a batch, 5 at once', () => {
    const pro = { work: 14, weight: 1 };
    const calls = fairShareWork(
      pro,
      Array.from({ length: 9 }, () => pro),
    );
    // Every one of them ends with the last: 10 × 14 calls × 8 s ÷ 5 at once = 224 s,
    // not the 22.4 s (3 waves of 8 s) one Pro task takes alone.
    assert.equal(calls, 140);
    assert.equal((calls * 8) / 5, 224);
  });

  it('weights split the capacity: weight 2 against 1 is served twice as fast', () => {
    // By the time the newcomer has made its 10 calls, the other user (a third of the capacity) made 5.
    assert.equal(fairShareWork({ work: 10, weight: 2 }, [{ work: 100, weight: 1 }]), 15);
    // A user with less left than that finishes first and takes only its own work.
    assert.equal(fairShareWork({ work: 10, weight: 2 }, [{ work: 3, weight: 1 }]), 13);
    // Nobody else: its own work.
    assert.equal(fairShareWork({ work: 7, weight: 1 }, []), 7);
  });

  it('equals processor sharing played out phase by phase, and stays within its bounds', () => {
    const sharer = fc.record({
      work: fc.double({ min: 0.01, max: 200, noNaN: true }),
      weight: fc.double({ min: 0.1, max: 10, noNaN: true }),
    });
    fc.assert(
      fc.property(sharer, fc.array(sharer, { maxLength: 12 }), (own, others) => {
        const total = fairShareWork(own, others);
        const phases = gpsByPhases([own, ...others]);
        assert.ok(Math.abs(total - phases) <= 1e-6 * Math.max(1, phases), `${total} vs ${phases}`);
        // At least its own work, at most everybody's.
        const all = others.reduce((n, o) => n + o.work, own.work);
        assert.ok(total >= own.work - 1e-9 && total <= all + 1e-9);
        // More work of one's own never ends sooner.
        assert.ok(fairShareWork({ ...own, work: own.work * 1.5 }, others) >= total - 1e-9);
      }),
    );
  });
});

/**
 * Weighted processor sharing with a user arriving once user 0 has done a share `progress` of its
 * work, played out phase by phase like `gpsByPhases`: the work the arrival does before user 0 ends.
 */
function arrivalWorkByPhases(users: Sharer[], arrival: Sharer, progress: number): number {
  const left = users.map((u) => u.work);
  const all = [...users];
  let joined = false;
  for (;;) {
    const target = users[0]!.work * (1 - progress);
    if (!joined && left[0]! <= target + 1e-12) {
      all.push(arrival);
      left.push(arrival.work);
      joined = true;
    }
    if (left[0]! <= 1e-12) return joined ? arrival.work - left[all.length - 1]! : 0;
    const active = all.map((_, i) => i).filter((i) => left[i]! > 1e-12 && all[i]!.weight > 0);
    const totalWeight = active.reduce((n, i) => n + all[i]!.weight, 0);
    let dt = Math.min(...active.map((i) => (left[i]! * totalWeight) / all[i]!.weight));
    // Stop the phase where user 0 reaches the arrival's instant.
    if (!joined) dt = Math.min(dt, ((left[0]! - target) * totalWeight) / all[0]!.weight);
    for (const i of active) left[i] = left[i]! - (dt * all[i]!.weight) / totalWeight;
  }
}

describe('an arrival during the run (arrivalShare)', () => {
  it('an equal user arriving at a uniform point of the run does half the work, on average', () => {
    // It takes the newcomer's pace from its arrival on: v·X when v of X is left, mean X / 2.
    assert.equal(arrivalShare({ work: 14, weight: 1 }, { work: 14, weight: 1 }), 7);
    // A heavier arrival (twice the weight) would do 2X over the whole run: X on average.
    assert.equal(arrivalShare({ work: 10, weight: 1 }, { work: 100, weight: 2 }), 10);
    // A small one ends first when it arrives early: W − W² / (2a) = 2 − 4 / 20.
    assert.equal(arrivalShare({ work: 10, weight: 1 }, { work: 2, weight: 1 }), 1.8);
  });

  it('equals processor sharing with the arrival played out, averaged over where in the run it arrives', () => {
    const sharer = fc.record({
      work: fc.double({ min: 0.5, max: 50, noNaN: true }),
      weight: fc.double({ min: 0.2, max: 5, noNaN: true }),
    });
    fc.assert(
      fc.property(sharer, sharer, fc.array(sharer, { maxLength: 4 }), (own, arrival, others) => {
        // Midpoints of a fine grid of arrival points (the integrand is piecewise linear in v).
        const n = 400;
        let sum = 0;
        for (let i = 0; i < n; i++) sum += arrivalWorkByPhases([own, ...others], arrival, (i + 0.5) / n);
        const played = sum / n;
        const closed = arrivalShare(own, arrival);
        assert.ok(Math.abs(played - closed) <= 1e-3 * Math.max(1, closed), `${played} vs ${closed}`);
      }),
      { numRuns: 40 },
    );
  });
});
