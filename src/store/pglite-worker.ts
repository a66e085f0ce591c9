/**
 * The worker-thread end of the threaded PGlite (pglite-thread.ts starts it): opens PGlite and
 * runs the statements the server's thread sends, each as soon as it arrives — PGlite queues
 * them itself, so many callers' statements are in its queue at once rather than one round trip
 * each. A transaction's statements run inside that PGlite transaction, which holds every other
 * statement back until the server's thread ends it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { Transaction } from '@electric-sql/pglite';
import { openPglite, runPglite, type PGlite } from './pglite.ts';
import { toWireError, type Reply, type Request } from './pglite-messages.ts';

export interface PgliteWorkerData {
  dataDir: string | undefined;
}

type Statement = Extract<Request, { op: 'query' | 'exec' }>;

/** A transaction the server's thread opened: its statements until PGlite starts it, then PGlite's handle. */
interface OpenTransaction {
  waiting: Statement[];
  handle: Transaction | undefined;
  /** Set when BEGIN failed: every statement of the transaction answers with it. */
  failed: unknown;
  running: Promise<void>[];
  end: (commit: boolean) => void;
  ended: Promise<boolean>;
}

const port = parentPort!;
const { dataDir } = workerData as PgliteWorkerData;
const post = (reply: Reply) => port.postMessage(reply);

/** Thrown inside PGlite's transaction callback to make it roll back. */
const ROLLBACK = Symbol('rollback');

function answer(id: number, work: Promise<{ rows: unknown[]; rowCount: number } | void>): Promise<void> {
  return work.then(
    (result) => {
      if (!result) return post({ type: 'done', id });
      try {
        post({ type: 'result', id, rows: result.rows, rowCount: result.rowCount });
      } catch (error) {
        // A value structured clone cannot copy: that statement fails, the thread goes on.
        post({ type: 'error', id, error: toWireError(error) });
      }
    },
    (error: unknown) => post({ type: 'error', id, error: toWireError(error) }),
  );
}

function run(on: PGlite | Transaction, m: Statement): Promise<void> {
  if (m.op === 'query') return answer(m.id, runPglite(on, m.sql, m.params));
  return answer(
    m.id,
    on.exec(m.sql).then(() => undefined),
  );
}

let opened: PGlite | undefined;
try {
  opened = await openPglite(dataDir);
} catch (error) {
  post({ type: 'failed', error: toWireError(error) });
  port.close(); // nothing else keeps the thread alive: it ends
}
if (opened) serve(opened);

function serve(pglite: PGlite): void {
  const transactions = new Map<number, OpenTransaction>();
  const listening = new Map<string, () => Promise<void>>();

  function begin(txId: number): void {
    let end!: (commit: boolean) => void;
    const tx: OpenTransaction = {
      waiting: [],
      handle: undefined,
      failed: undefined,
      running: [],
      end: (commit) => end(commit),
      ended: new Promise<boolean>((resolve) => (end = resolve)),
    };
    transactions.set(txId, tx);
    tx.ended.catch(() => {});
    void pglite
      .transaction(async (handle) => {
        tx.handle = handle;
        for (const m of tx.waiting.splice(0)) tx.running.push(run(handle, m));
        const commit = await tx.ended;
        // Statements the server's thread sent without awaiting still run before COMMIT/ROLLBACK.
        await Promise.all(tx.running);
        if (!commit) throw ROLLBACK;
      })
      .then(
        () => finish(txId, undefined),
        (error: unknown) => finish(txId, error === ROLLBACK ? undefined : error),
      );
  }

  const endIds = new Map<number, number>();

  /** Answers the transaction's end (and, if BEGIN failed, its statements still waiting). */
  function finish(txId: number, error: unknown): void {
    const tx = transactions.get(txId);
    if (tx && !tx.handle && error !== undefined) {
      tx.failed = error;
      for (const m of tx.waiting.splice(0)) post({ type: 'error', id: m.id, error: toWireError(error) });
    }
    const endId = endIds.get(txId);
    if (endId === undefined) return; // BEGIN failed before the end was sent; the end answers on arrival
    endIds.delete(txId);
    transactions.delete(txId);
    if (error === undefined) post({ type: 'done', id: endId });
    else post({ type: 'error', id: endId, error: toWireError(error) });
  }

  function statement(m: Statement): void {
    if (m.tx === undefined) {
      void run(pglite, m);
      return;
    }
    const tx = transactions.get(m.tx);
    if (!tx) {
      post({ type: 'error', id: m.id, error: toWireError(new Error('Transaction is closed')) });
    } else if (tx.failed !== undefined) {
      post({ type: 'error', id: m.id, error: toWireError(tx.failed) });
    } else if (tx.handle) {
      tx.running.push(run(tx.handle, m));
    } else {
      tx.waiting.push(m);
    }
  }

  function endTransaction(m: Extract<Request, { op: 'end' }>): void {
    const tx = transactions.get(m.tx);
    if (!tx) {
      post({ type: 'error', id: m.id, error: toWireError(new Error('Transaction is closed')) });
      return;
    }
    endIds.set(m.tx, m.id);
    if (tx.failed !== undefined) finish(m.tx, tx.failed);
    else tx.end(m.commit);
  }

  async function listen(channel: string): Promise<void> {
    if (listening.has(channel)) return;
    const unsubscribe = await pglite.listen(channel, (payload) =>
      post({ type: 'notification', channel, payload }),
    );
    listening.set(channel, unsubscribe);
  }

  async function unlisten(channel: string): Promise<void> {
    const unsubscribe = listening.get(channel);
    listening.delete(channel);
    await unsubscribe?.();
  }

  port.on('message', (m: Request) => {
    switch (m.op) {
      case 'query':
      case 'exec':
        statement(m);
        break;
      case 'begin':
        begin(m.tx);
        break;
      case 'end':
        endTransaction(m);
        break;
      case 'listen':
        void answer(m.id, listen(m.channel));
        break;
      case 'unlisten':
        void answer(m.id, unlisten(m.channel));
        break;
      case 'close':
        // PGlite's close() waits for the statements and transactions already queued.
        void answer(m.id, pglite.close()).then(() => port.close());
        break;
    }
  });
  post({ type: 'ready' });
}
