import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chooseKey,
  keyAvailableAtMs,
  keyCanStartNow,
  recordStart,
  requestsInWindow,
} from '../../src/policy/keys.ts';
import type { KeyView } from '../../src/policy/types.ts';

const W = 61_000;
const key = (over: Partial<KeyView> = {}): KeyView => ({
  id: 'k',
  rpm: 3,
  concurrency: 2,
  inFlight: 0,
  usable: true,
  cooldownUntilMs: 0,
  recentStartsMs: [],
  ...over,
});

describe('sliding-window RPM', () => {
  it('counts only requests inside the window ending now', () => {
    const k = key({ recentStartsMs: [0, 1000, 50_000] });
    assert.equal(requestsInWindow(k, 60_000, W), 3);
    assert.equal(requestsInWindow(k, 61_000, W), 2); // 0 left exactly at 0 + window
    assert.equal(requestsInWindow(k, 111_000, W), 0);
  });

  it('a full key frees when its oldest counted request leaves the window', () => {
    const k = key({ rpm: 2, recentStartsMs: [1000, 5000, 9000] });
    // the 2nd newest (5000) must leave: at 5000 + W
    assert.equal(keyAvailableAtMs(k, 10_000, W), 5000 + W);
    assert.equal(keyCanStartNow(k, 5000 + W - 1, W), false);
    assert.equal(keyCanStartNow(k, 5000 + W, W), true);
  });

  it('never lets more than rpm requests into any window', () => {
    const k = key({ rpm: 3, concurrency: 100 });
    for (let t = 0; t < 300_000; t += 1000) {
      if (keyCanStartNow(k, t, W)) recordStart(k, t);
      k.inFlight = 0;
      const inWindow = k.recentStartsMs.filter((s) => s + W > t).length;
      assert.ok(inWindow <= 3);
    }
    assert.equal(k.recentStartsMs.length, 15); // 3 per 61 s over 300 s: at 0, 61, 122, 183, 244 s
  });

  it('honours cool-down, in-flight limit and usability', () => {
    assert.equal(keyCanStartNow(key({ cooldownUntilMs: 5000 }), 4999, W), false);
    assert.equal(keyCanStartNow(key({ cooldownUntilMs: 5000 }), 5000, W), true);
    assert.equal(keyAvailableAtMs(key({ cooldownUntilMs: 5000 }), 0, W), 5000);
    assert.equal(keyCanStartNow(key({ inFlight: 2 }), 0, W), false);
    assert.equal(keyCanStartNow(key({ usable: false }), 0, W), false);
    assert.equal(keyAvailableAtMs(key({ usable: false }), 0, W), Number.POSITIVE_INFINITY);
  });
});

describe('key choice', () => {
  it('takes the key with the most RPM headroom, then the fewest in flight, then the lowest id — never random', () => {
    const a = key({ id: 'a', rpm: 10, recentStartsMs: [1, 2, 3] });
    const b = key({ id: 'b', rpm: 10, recentStartsMs: [1] });
    const c = key({ id: 'c', rpm: 10, recentStartsMs: [1], inFlight: 1 });
    assert.equal(chooseKey([a, b, c], 10, W)?.id, 'b');
    assert.equal(chooseKey([c, b, a], 10, W)?.id, 'b');
    const d = key({ id: 'd', rpm: 10, recentStartsMs: [1] });
    assert.equal(chooseKey([d, b], 10, W)?.id, 'b');
    for (let i = 0; i < 20; i++) assert.equal(chooseKey([a, b, c, d], 10, W)?.id, 'b');
  });

  it('skips keys that cannot start and returns none when no key can', () => {
    const cooling = key({ id: 'a', cooldownUntilMs: 100 });
    const busy = key({ id: 'b', inFlight: 2 });
    const disabled = key({ id: 'c', usable: false });
    const spent = key({ id: 'd', rpm: 1, recentStartsMs: [0] });
    assert.equal(chooseKey([cooling, busy, disabled, spent], 50, W), undefined);
    assert.equal(chooseKey([cooling, busy, disabled, spent], 100, W)?.id, 'a');
  });

  it('spreads a burst over the pool: round-robin by headroom', () => {
    const keys = ['a', 'b', 'c'].map((id) => key({ id, rpm: 15, concurrency: 20 }));
    const used: string[] = [];
    for (let i = 0; i < 45; i++) {
      const k = chooseKey(keys, 0, W)!;
      recordStart(k, 0);
      used.push(k.id);
    }
    assert.deepEqual(used.slice(0, 6), ['a', 'b', 'c', 'a', 'b', 'c']);
    assert.equal(chooseKey(keys, 0, W), undefined);
  });
});
