import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  attemptRefund,
  finalStateFor,
  isRetryable,
  refundFor,
  retryCharge,
} from '../../src/policy/credits.ts';

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

describe('retries: one charge and at most one refund per attempt', () => {
  it('charges a retry what the last attempt refunded for the same images', () => {
    // 10 credits for 3 images. Attempt 1 delivers 1: refund ⌊10·2/3⌋ = 6. Attempt 2 runs the
    // 2 missing for 6 and delivers 1: refund ⌊6·1/2⌋ = 3. Attempt 3 runs the last for 3.
    const first = { images: 3, credits: 10 };
    assert.equal(attemptRefund(first, 2), 6);
    assert.equal(retryCharge(first, 2), 6);
    const second = { images: 2, credits: 6 };
    assert.equal(attemptRefund(second, 1), 3);
    const third = { images: 1, credits: retryCharge(second, 1) };
    assert.equal(third.credits, 3);
    assert.equal(attemptRefund(third, 0), 0);
    assert.equal(10 - 6 + 6 - 3 + 3 - 0, 10);
    assert.equal(attemptRefund(third, 1), 3, 'delivering nothing refunds the whole attempt');
  });

  it('keeps the net cost of any sequence of attempts at the price of what was delivered', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 0, max: 50 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 6 }),
        (images, perImage, shares) => {
          const price = images * perImage;
          let net = 0;
          let owed = images;
          let attempt = { images, credits: price };
          for (const [n, share] of shares.entries()) {
            if (n > 0) {
              if (owed === 0) break;
              attempt = { images: owed, credits: retryCharge(attempt, owed) };
            }
            net += attempt.credits;
            owed -= Math.floor(share * attempt.images);
            net -= attemptRefund(attempt, owed);
            assert.ok(net >= 0 && net <= price);
          }
          // A whole price per image: exactly what was delivered is paid for.
          assert.equal(net, perImage * (images - owed));
        },
      ),
    );
  });

  it('retries only failed and partial tasks', () => {
    assert.deepEqual(
      ['queued', 'running', 'succeeded', 'partial', 'failed', 'canceled'].filter(isRetryable),
      ['partial', 'failed'],
    );
  });
});
