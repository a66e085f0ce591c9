/**
 * The input images a worker's provider calls send, read from storage once and kept for the
 * calls after. The calls of one step of a task all send the same inputs (a Pro task of 70
 * images is 14 calls of its one beautified image), and a call's input is read while the call
 * holds its provider's slot: on a busy event loop a local file read (open, stat, read, close:
 * four trips through libuv's thread pool) took 50 ms of the slot's ~400 ms cycle on PGlite
 * (docs/benchmarks.md, makespan), against 0.1 ms for the same read done at once.
 *
 * Keys hold what an earlier step's successful attempt staged or what a submit uploaded: a
 * job's inputs exist before the job does and are not written again while it can run. Bounded
 * by bytes, least recently used first out; reads of one key that overlap share one read, and a
 * failed read is not kept.
 */
export interface InputCache {
  get(key: string, read: (key: string) => Promise<Buffer>): Promise<Buffer>;
  /** Bytes held (tests). */
  bytes(): number;
}

export function createInputCache(maxBytes: number): InputCache {
  // Map order is use order: the first entry is the least recently used.
  const entries = new Map<string, Buffer>();
  const reading = new Map<string, Promise<Buffer>>();
  let held = 0;

  function keep(key: string, data: Buffer): void {
    if (data.length > maxBytes || entries.has(key)) return;
    entries.set(key, data);
    held += data.length;
    for (const [k, v] of entries) {
      if (held <= maxBytes) break;
      entries.delete(k);
      held -= v.length;
    }
  }

  return {
    get(key, read) {
      const hit = entries.get(key);
      if (hit) {
        entries.delete(key);
        entries.set(key, hit);
        return Promise.resolve(hit);
      }
      let pending = reading.get(key);
      if (!pending) {
        pending = read(key).then(
          (data) => {
            reading.delete(key);
            keep(key, data);
            return data;
          },
          (error: unknown) => {
            reading.delete(key);
            throw error;
          },
        );
        reading.set(key, pending);
      }
      return pending;
    },
    bytes: () => held,
  };
}
