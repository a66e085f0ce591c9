import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createInputCache } from '../../src/worker/input-cache.ts';
import { deferred } from '../helpers/worker.ts';

/** A store of byte strings that counts its reads and can hold one open. */
function source(files: Record<string, number>) {
  const reads: string[] = [];
  let gate: ReturnType<typeof deferred<void>> | undefined;
  return {
    reads,
    hold() {
      gate = deferred<void>();
      return () => gate!.resolve();
    },
    async read(key: string): Promise<Buffer> {
      reads.push(key);
      if (gate) await gate.promise;
      const size = files[key];
      if (size === undefined) throw new Error(`no file ${key}`);
      return Buffer.alloc(size, key);
    },
  };
}

describe('the input cache', () => {
  it('reads a key once, and reads that overlap share that one read', async () => {
    const s = source({ a: 10 });
    const cache = createInputCache(100);
    const release = s.hold();
    const both = Promise.all([cache.get('a', s.read), cache.get('a', s.read)]);
    release();
    const [x, y] = await both;
    assert.equal(x, y);
    assert.equal((await cache.get('a', s.read)).length, 10);
    assert.deepEqual(s.reads, ['a']);
  });

  it('keeps at most its bytes, dropping the least recently used first', async () => {
    const s = source({ a: 40, b: 40, c: 40, big: 101 });
    const cache = createInputCache(100);
    await cache.get('a', s.read);
    await cache.get('b', s.read);
    await cache.get('a', s.read); // a is now the most recently used
    await cache.get('c', s.read); // 120 bytes: b goes
    assert.equal(cache.bytes(), 80);
    await cache.get('a', s.read);
    await cache.get('c', s.read);
    await cache.get('b', s.read);
    await cache.get('big', s.read); // larger than the whole cache: read, never kept
    await cache.get('big', s.read);
    assert.deepEqual(s.reads, ['a', 'b', 'c', 'b', 'big', 'big']);
    assert.ok(cache.bytes() <= 100);
  });

  it('does not keep a failed read', async () => {
    const files: Record<string, number> = {};
    const s = source(files);
    const cache = createInputCache(100);
    await assert.rejects(cache.get('late', s.read), /no file late/);
    files.late = 5;
    assert.equal((await cache.get('late', s.read)).length, 5);
    assert.deepEqual(s.reads, ['late', 'late']);
  });
});
