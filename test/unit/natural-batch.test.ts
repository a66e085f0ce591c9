import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { naturalBatcher, type Settled } from '../../src/pipeline/natural-batch.ts';

/** A batcher whose batches end when the test says so; records each batch's items. */
function controlled(options: { maxItems: number; maxInFlight: number }) {
  const batches: number[][] = [];
  const ends: Array<() => void> = [];
  const batcher = naturalBatcher<number, number>(async (items) => {
    batches.push(items);
    await new Promise<void>((resolve) => ends.push(resolve));
    return items.map((i): Settled<number> =>
      i < 0 ? { ok: false, error: new Error(`bad ${i}`) } : { ok: true, value: i * 10 },
    );
  }, options);
  return { batcher, batches, ends };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('natural batching', () => {
  it('sends what queued in one tick together, and what queued while it was in flight as the next batch', async () => {
    const { batcher, batches, ends } = controlled({ maxItems: 10, maxInFlight: 1 });
    const first = [1, 2, 3].map((i) => batcher.push(i));
    await tick();
    assert.deepEqual(batches, [[1, 2, 3]]);
    const second = [4, 5].map((i) => batcher.push(i));
    await tick();
    // One batch in flight at most: 4 and 5 wait for it.
    assert.deepEqual(batches, [[1, 2, 3]]);
    ends.shift()!();
    assert.deepEqual(await Promise.all(first), [10, 20, 30]);
    await tick();
    assert.deepEqual(batches, [
      [1, 2, 3],
      [4, 5],
    ]);
    ends.shift()!();
    assert.deepEqual(await Promise.all(second), [40, 50]);
  });

  it('caps a batch at maxItems, and answers each item with its own value or error', async () => {
    const { batcher, batches, ends } = controlled({ maxItems: 2, maxInFlight: 2 });
    const all = Promise.allSettled([1, -2, 3, 4, 5].map((i) => batcher.push(i)));
    await tick();
    // Two in flight: [1, -2] and [3, 4]; 5 waits for one of them.
    assert.deepEqual(batches, [
      [1, -2],
      [3, 4],
    ]);
    ends.shift()!();
    await tick();
    assert.deepEqual(batches, [[1, -2], [3, 4], [5]]);
    ends.shift()!();
    ends.shift()!();
    const settled = await all;
    assert.deepEqual(
      settled.map((s) => (s.status === 'fulfilled' ? s.value : (s.reason as Error).message)),
      [10, 'bad -2', 30, 40, 50],
    );
  });

  it('a batch that throws rejects each of its items with the error', async () => {
    const batcher = naturalBatcher<number, number>(() => Promise.reject(new Error('down')), {
      maxItems: 5,
      maxInFlight: 1,
    });
    const settled = await Promise.allSettled([batcher.push(1), batcher.push(2)]);
    assert.deepEqual(
      settled.map((s) => s.status === 'rejected' && (s.reason as Error).message),
      ['down', 'down'],
    );
  });
});
