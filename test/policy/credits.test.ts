import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { finalStateFor, refundFor } from '../../src/policy/credits.ts';

describe('refunds and final states', () => {
  it('refunds the undelivered share, rounded down, never more than charged', () => {
    assert.equal(refundFor(70, 70, 0), 70);
    assert.equal(refundFor(70, 70, 70), 0);
    assert.equal(refundFor(70, 70, 35), 35);
    assert.equal(refundFor(10, 3, 1), 6);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1000 }),
        fc.integer({ min: 1, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        (charged, total, done) => {
          const d = Math.min(done, total);
          const r = refundFor(charged, total, d);
          assert.ok(r >= 0 && r <= charged);
          if (d === 0) assert.equal(r, charged);
        },
      ),
    );
  });

  it('names the final state from what was delivered', () => {
    assert.equal(finalStateFor(5, 5, false), 'succeeded');
    assert.equal(finalStateFor(5, 3, false), 'partial');
    assert.equal(finalStateFor(5, 0, false), 'failed');
    assert.equal(finalStateFor(5, 5, true), 'canceled');
  });
});
