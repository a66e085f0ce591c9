import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../config/load.ts';
import type { ForecastInput } from './forecast-input.ts';
import { runForecast } from './forecast-run.ts';

/**
 * The forecast worker thread (started by src/scheduler/forecaster.ts): simulates each state the
 * leader posts and posts the result back, so that the simulation never runs on the event loop
 * that serves HTTP. A run stops at its time budget; what it did not simulate is marked so.
 */
const config = (workerData as { config: Config }).config;

parentPort!.on('message', (msg: { input: ForecastInput; budgetMs: number }) => {
  const deadline = performance.now() + msg.budgetMs;
  try {
    parentPort!.postMessage({
      ok: true,
      output: runForecast(config, msg.input, () => performance.now() > deadline),
    });
  } catch (error) {
    parentPort!.postMessage({ ok: false, message: error instanceof Error ? error.message : String(error) });
  }
});

// Loaded (the simulator compiled): the leader may forecast without waiting for it.
parentPort!.postMessage({ ready: true });
