import type { Worker } from 'node:worker_threads';
import type { Config } from '../config/load.ts';
import { startModuleThread } from '../module-thread.ts';
import type { ForecastInput } from './forecast-input.ts';
import type { ForecastOutput } from './forecast-run.ts';

/** The forecast worker thread, one run at a time. */
export interface ForecastThread {
  /**
   * Starts the thread now (if it is not running) and resolves once its modules are loaded, so
   * that the first forecast does not pay for compiling the simulator.
   */
  warm(): Promise<void>;
  run(input: ForecastInput, budgetMs: number): Promise<ForecastOutput>;
  close(): Promise<void>;
}

type Reply = { ready: true } | { ok: true; output: ForecastOutput } | { ok: false; message: string };

/**
 * Starts the forecaster worker module (forecaster-worker.ts, or .js compiled) in a worker thread
 * on `warm()` or first use (and again after it died); src/module-thread.ts picks how.
 */
export function createForecastThread(config: Config): ForecastThread {
  let worker: Worker | undefined;
  let pending: { resolve: (o: ForecastOutput) => void; reject: (e: Error) => void } | undefined;
  let ready: { promise: Promise<void>; resolve: () => void } | undefined;

  function fail(error: Error): void {
    const p = pending;
    pending = undefined;
    worker = undefined;
    // A thread that died before it was ready: whoever waits for it is not kept waiting.
    ready?.resolve();
    ready = undefined;
    p?.reject(error);
  }

  function spawn(): Worker {
    const w = startModuleThread(import.meta.url, './forecaster-worker.ts', { workerData: { config } });
    w.unref();
    let resolveReady!: () => void;
    ready = { promise: new Promise<void>((r) => (resolveReady = r)), resolve: () => resolveReady() };
    w.on('message', (reply: Reply) => {
      if ('ready' in reply) {
        ready?.resolve();
        return;
      }
      const p = pending;
      pending = undefined;
      if (!p) return;
      if (reply.ok) p.resolve(reply.output);
      else p.reject(new Error(`forecast failed: ${reply.message}`));
    });
    w.on('error', (error) => fail(error));
    w.on('exit', (code) => {
      if (worker === w) fail(new Error(`forecast thread exited (code ${code})`));
    });
    return w;
  }

  return {
    async warm() {
      worker ??= spawn();
      await ready?.promise;
    },
    run(input, budgetMs) {
      if (pending) return Promise.reject(new Error('a forecast is already running'));
      worker ??= spawn();
      const w = worker;
      return new Promise<ForecastOutput>((resolve, reject) => {
        pending = { resolve, reject };
        w.postMessage({ input, budgetMs });
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
      fail(new Error('forecast thread closed'));
    },
  };
}
