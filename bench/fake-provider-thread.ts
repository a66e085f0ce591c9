/**
 * The provider simulator in a worker thread: its rendering, JSON and base64 run off the event
 * loop of the darkroom server under test, as a real provider's work does (PGlite runs the
 * database on that loop too). Same process, so the same libuv threadpool.
 */
import { Worker } from 'node:worker_threads';
import type { FakeProviderOptions } from '../src/providers/fake-server/index.ts';

export interface ThreadedFakeProvider {
  url: string;
  close(): Promise<void>;
}

export async function startFakeProviderThread(options: FakeProviderOptions): Promise<ThreadedFakeProvider> {
  const worker = new Worker(new URL('./fake-provider-worker.mjs', import.meta.url), { workerData: options });
  const url = await new Promise<string>((resolve, reject) => {
    worker.once('message', (message: { url: string }) => resolve(message.url));
    worker.once('error', reject);
  });
  return {
    url,
    async close() {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.postMessage('close');
      await exited;
    },
  };
}
