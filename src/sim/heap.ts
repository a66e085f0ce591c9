import { MinHeap } from '../policy/heap.ts';

/** Events ordered by `at`, then by insertion order, so equal times pop first-in first-out. */
export class EventHeap<T extends { at: number }> {
  private readonly heap = new MinHeap<{ item: T; seq: number }>(
    (x, y) => x.item.at < y.item.at || (x.item.at === y.item.at && x.seq < y.seq),
  );
  private seq = 0;

  get size(): number {
    return this.heap.size;
  }

  push(item: T): void {
    this.heap.push({ item, seq: this.seq++ });
  }

  /** The pending events, in no particular order. */
  *values(): IterableIterator<T> {
    for (const e of this.heap.values()) yield e.item;
  }

  peek(): T | undefined {
    return this.heap.peek()?.item;
  }

  pop(): T | undefined {
    return this.heap.pop()?.item;
  }
}
