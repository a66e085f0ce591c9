/** A binary min-heap ordered by `at`, then by insertion order, so equal times pop first-in first-out. */
export class EventHeap<T extends { at: number }> {
  private items: Array<{ item: T; seq: number }> = [];
  private seq = 0;

  get size(): number {
    return this.items.length;
  }

  push(item: T): void {
    const entry = { item, seq: this.seq++ };
    const a = this.items;
    a.push(entry);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(a[i]!, a[parent]!)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  /** The pending events, in no particular order. */
  *values(): IterableIterator<T> {
    for (const e of this.items) yield e.item;
  }

  peek(): T | undefined {
    return this.items[0]?.item;
  }

  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    if (!top) return undefined;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top.item;
  }

  private less(x: { item: T; seq: number }, y: { item: T; seq: number }): boolean {
    return x.item.at < y.item.at || (x.item.at === y.item.at && x.seq < y.seq);
  }
}
