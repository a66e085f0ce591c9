/**
 * Natural batching (group commit): items that arrive while a batch is in flight wait, and go
 * together as the next batch once it ends. Nothing waits on a timer: an item that finds nothing in
 * flight goes at once (after the current synchronous code, so items queued in the same tick go
 * together), and under load the batches grow with the time each one takes.
 *
 * `run` answers each item of a batch, in order, with its value or its error.
 */
export type Settled<O> = { ok: true; value: O } | { ok: false; error: unknown };

export interface NaturalBatcher<I, O> {
  push(item: I): Promise<O>;
}

interface Waiting<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export function naturalBatcher<I, O>(
  run: (items: I[]) => Promise<Array<Settled<O>>>,
  options: { maxItems: number; maxInFlight: number },
): NaturalBatcher<I, O> {
  const queue: Array<Waiting<I, O>> = [];
  let inFlight = 0;
  let scheduled = false;

  const start = (): void => {
    scheduled = false;
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, options.maxItems);
      inFlight++;
      void runBatch(batch).finally(() => {
        inFlight--;
        start();
      });
    }
  };

  const runBatch = async (batch: Array<Waiting<I, O>>): Promise<void> => {
    let results: Array<Settled<O>>;
    try {
      results = await run(batch.map((w) => w.item));
    } catch (error) {
      results = batch.map(() => ({ ok: false, error }));
    }
    batch.forEach((w, i) => {
      const r = results[i] ?? { ok: false, error: new Error('natural batch: no result for an item') };
      if (r.ok) w.resolve(r.value);
      else w.reject(r.error);
    });
  };

  return {
    push(item) {
      return new Promise<O>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        if (!scheduled && inFlight < options.maxInFlight) {
          scheduled = true;
          queueMicrotask(start);
        }
      });
    },
  };
}
