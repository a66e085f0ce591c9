import type { ResourceLimits, Worker } from 'node:worker_threads';
import { startModuleThread } from '../module-thread.ts';
import {
  RETRYABLE_SQLSTATES,
  sqlState,
  type Db,
  type NotificationHandler,
  type Queryable,
  type QueryResult,
} from './db.ts';
import { fromWireError, type Reply, type Request } from './pglite-messages.ts';
import type { PgliteWorkerData } from './pglite-worker.ts';

export interface PgliteThreadOptions {
  /** The worker thread's V8 heap limits (tests use them to make it run out of memory). */
  resourceLimits?: ResourceLimits;
}

/** Starts src/store/pglite-worker.ts (or its compiled .js) in a worker thread (src/module-thread.ts). */
function spawnPgliteWorker(data: PgliteWorkerData, options: PgliteThreadOptions): Worker {
  return startModuleThread(import.meta.url, './pglite-worker.ts', {
    workerData: data,
    ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
  });
}

/**
 * An error of a statement that never got an answer because the thread is gone: a connection
 * error for isConnectionError() (db.ts), as a lost PostgreSQL session is — the statement may or
 * may not have run. 57P01 admin_shutdown after close(), 57P02 crash_shutdown when the thread died
 * (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 */
export class PgliteThreadError extends Error {
  readonly code: '57P01' | '57P02';
  constructor(message: string, code: '57P01' | '57P02', options?: { cause: unknown }) {
    super(message, options);
    this.name = 'PgliteThreadError';
    this.code = code;
  }
}

interface Waiter {
  resolve: (reply: Extract<Reply, { type: 'result' | 'done' }>) => void;
  reject: (error: Error) => void;
}

/**
 * Embedded PostgreSQL (PGlite) in a worker thread, so its WebAssembly does not run on the
 * server's event loop (the default; `database.pgliteThread`). Statements are forwarded as
 * messages and answered in the order PGlite runs them; each is sent as soon as it is issued, so
 * PGlite always has the next one queued. transaction(fn) runs fn here: its statements go to the
 * open PGlite transaction in the thread, which holds every other statement back until fn ends
 * it (COMMIT when fn resolves, ROLLBACK when it throws). Errors keep their SQLSTATE and fields.
 * `dataDir` undefined keeps everything in memory (tests).
 */
export async function createPgliteThreadDb(
  dataDir: string | undefined,
  options: PgliteThreadOptions = {},
): Promise<Db> {
  const worker = spawnPgliteWorker({ dataDir }, options);
  const waiting = new Map<number, Waiter>();
  const handlers = new Map<string, Set<NotificationHandler>>();
  /** Per channel, the LISTEN/UNLISTEN sent last: the next one waits for it. */
  const subscribing = new Map<string, Promise<void>>();
  let nextId = 1;
  let nextTx = 1;
  /** Set once the thread cannot answer any more: every new statement fails with it. */
  let gone: PgliteThreadError | undefined;
  let closing = false;

  let started!: { resolve: () => void; reject: (e: Error) => void };
  const ready = new Promise<void>((resolve, reject) => (started = { resolve, reject }));

  function fail(error: PgliteThreadError): void {
    gone ??= error;
    started.reject(error);
    const all = [...waiting.values()];
    waiting.clear();
    for (const w of all) w.reject(error);
    worker.unref();
  }

  worker.on('message', (reply: Reply) => {
    switch (reply.type) {
      case 'ready':
        started.resolve();
        return;
      case 'failed':
        started.reject(fromWireError(reply.error));
        return;
      case 'notification':
        for (const handler of handlers.get(reply.channel) ?? []) handler(reply.payload);
        return;
    }
    const w = waiting.get(reply.id);
    if (!w) return;
    waiting.delete(reply.id);
    if (waiting.size === 0) worker.unref();
    if (reply.type === 'error') w.reject(fromWireError(reply.error));
    else w.resolve(reply);
  });
  worker.on('error', (error) => {
    fail(new PgliteThreadError(`the PGlite thread crashed: ${error.message}`, '57P02', { cause: error }));
  });
  worker.on('exit', (code) => {
    fail(
      closing
        ? new PgliteThreadError('the database is closed', '57P01')
        : new PgliteThreadError(`the PGlite thread exited (code ${code})`, '57P02'),
    );
  });

  function request(message: Request & { id: number }): Promise<Extract<Reply, { type: 'result' | 'done' }>> {
    if (gone) return Promise.reject(gone);
    return new Promise((resolve, reject) => {
      // Referenced only while an answer is awaited: an idle database does not keep the process alive.
      if (waiting.size === 0) worker.ref();
      waiting.set(message.id, { resolve, reject });
      worker.postMessage(message);
    });
  }

  function open(): PgliteThreadError | undefined {
    return gone ?? (closing ? new PgliteThreadError('the database is closed', '57P01') : undefined);
  }

  async function query<R>(
    sql: string,
    params: readonly unknown[] | undefined,
    tx?: number,
  ): Promise<QueryResult<R>> {
    const reply = await request({
      op: 'query',
      id: nextId++,
      sql,
      ...(params ? { params } : {}),
      ...(tx ? { tx } : {}),
    });
    return reply.type === 'result'
      ? { rows: reply.rows as R[], rowCount: reply.rowCount }
      : { rows: [], rowCount: 0 };
  }

  async function exec(sql: string, tx?: number): Promise<void> {
    await request({ op: 'exec', id: nextId++, sql, ...(tx ? { tx } : {}) });
  }

  /** One attempt of a transaction: BEGIN in the thread, fn here, then COMMIT or ROLLBACK there. */
  async function attempt<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const tx = nextTx++;
    let ended = false;
    const closed = () => Promise.reject(new Error('Transaction is closed'));
    worker.postMessage({ op: 'begin', tx } satisfies Request);
    const handle: Queryable = {
      query: (sql, params) => (ended ? closed() : query(sql, params, tx)),
      exec: (sql) => (ended ? closed() : exec(sql, tx)),
    };
    let value: T;
    try {
      value = await fn(handle);
    } catch (error) {
      ended = true;
      // The thread is gone: nothing to roll back, and fn's error says why.
      await request({ op: 'end', id: nextId++, tx, commit: false }).catch(() => {});
      throw error;
    }
    ended = true;
    await request({ op: 'end', id: nextId++, tx, commit: true });
    return value;
  }

  try {
    await ready;
  } catch (error) {
    closing = true;
    await worker.terminate();
    throw error;
  }
  worker.unref();

  return {
    kind: 'pglite',
    query(sql, params) {
      const error = open();
      return error ? Promise.reject(error) : query(sql, params);
    },
    exec(sql) {
      const error = open();
      return error ? Promise.reject(error) : exec(sql);
    },
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      for (let n = 1; ; n++) {
        const error = open();
        if (error) throw error;
        try {
          return await attempt(fn);
        } catch (error) {
          if (n < 5 && RETRYABLE_SQLSTATES.has(sqlState(error) ?? '')) continue;
          throw error;
        }
      }
    },
    async listen(channel, handler) {
      const error = open();
      if (error) throw error;
      let set = handlers.get(channel);
      if (!set) {
        set = new Set();
        handlers.set(channel, set);
      }
      const first = set.size === 0;
      set.add(handler);
      if (first) await subscribe(channel, 'listen');
      else await subscribing.get(channel);
      return async () => {
        if (!set.delete(handler) || set.size > 0 || open()) return;
        await subscribe(channel, 'unlisten');
      };
    },
    async notify(channel, payload = '') {
      const error = open();
      if (error) throw error;
      await query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async close() {
      if (closing) return;
      closing = true;
      // PGlite's close() in the thread waits for the statements already sent.
      await request({ op: 'close', id: nextId++ }).catch(() => {});
      await worker.terminate();
    },
  };

  /** LISTEN or UNLISTEN on a channel, after the one sent before it for that channel. */
  function subscribe(channel: string, op: 'listen' | 'unlisten'): Promise<void> {
    const previous = subscribing.get(channel) ?? Promise.resolve();
    const next = previous
      .catch(() => {})
      .then(() => request({ op, id: nextId++, channel }))
      .then(() => undefined);
    subscribing.set(channel, next);
    if (op === 'listen') {
      next.catch(() => {
        // The LISTEN failed: its handlers would never be called, so they are not kept.
        if (subscribing.get(channel) === next) handlers.delete(channel);
      });
    }
    return next;
  }
}
