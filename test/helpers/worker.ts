import { Writable } from 'node:stream';
import path from 'node:path';
import pino from 'pino';
import type { Config } from '../../src/config/load.ts';
import type { Context } from '../../src/context.ts';
import { createProviders } from '../../src/providers/registry.ts';
import type { ProviderAdapter } from '../../src/providers/types.ts';
import { createLocalStorage } from '../../src/storage/index.ts';
import type { Storage } from '../../src/storage/types.ts';
import type { Db } from '../../src/store/db.ts';
import { tempDir } from './config.ts';

/** Every line a pino logger wrote, parsed. */
export interface LogLines {
  lines: Array<{ level: number; msg: string } & Record<string, unknown>>;
  messages(): string[];
}

/** A pino logger writing JSON lines into memory, so a test can assert on what was logged. */
export function capturedLog(level = 'debug'): { log: pino.Logger; captured: LogLines } {
  const captured: LogLines = {
    lines: [],
    messages: () => captured.lines.map((l) => l.msg),
  };
  let pending = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      pending += chunk.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.trim()) captured.lines.push(JSON.parse(line) as LogLines['lines'][number]);
      }
      done();
    },
  });
  return { log: pino({ level }, stream), captured };
}

/** A promise with its resolve exposed: holds a storage operation or a call open until the test says so. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Real local storage whose operations can be held open: `hold(op, match)` makes the next
 * matching operation wait (after telling `reached`) until `release()`.
 */
export function holdableStorage(inner: Storage) {
  const holds: Array<{
    op: 'get' | 'put' | 'delete';
    match: (key: string) => boolean;
    reached: ReturnType<typeof deferred<string>>;
    gate: ReturnType<typeof deferred<void>>;
  }> = [];
  const wait = async (op: 'get' | 'put' | 'delete', key: string) => {
    const i = holds.findIndex((h) => h.op === op && h.match(key));
    if (i < 0) return;
    const [h] = holds.splice(i, 1);
    h!.reached.resolve(key);
    await h!.gate.promise;
  };
  const storage: Storage = {
    driver: inner.driver,
    async put(key, data, type) {
      await wait('put', key);
      return inner.put(key, data, type);
    },
    async get(key) {
      await wait('get', key);
      return inner.get(key);
    },
    async delete(key) {
      await wait('delete', key);
      return inner.delete(key);
    },
    url: (key, s) => inner.url(key, s),
  };
  return {
    storage,
    /** Holds the next `op` on a key `match` accepts; resolves `reached` with the key when it starts. */
    hold(op: 'get' | 'put' | 'delete', match: (key: string) => boolean) {
      const h = { op, match, reached: deferred<string>(), gate: deferred<void>() };
      holds.push(h);
      return { reached: h.reached.promise, release: () => h.gate.resolve() };
    },
  };
}

/** A context for running a worker (and a scheduler) in this process, on the given database. */
export function workerContext(
  db: Db,
  config: Config,
  options: { log?: pino.Logger; storage?: Storage; providers?: Map<string, ProviderAdapter> } = {},
): Context {
  return {
    db,
    config,
    storage:
      options.storage ??
      createLocalStorage({ dir: path.join(tempDir(), 'files'), signingSecret: 'test-secret' }),
    log: options.log ?? pino({ level: 'silent' }),
    providers: options.providers ?? createProviders(config, 1),
    random: () => 0.5,
  };
}

export function localStorage(): Storage {
  return createLocalStorage({ dir: path.join(tempDir(), 'files'), signingSecret: 'test-secret' });
}
