// The worker thread of bench/fake-provider-thread.ts. A worker cannot start from a .ts file, so
// this registers tsx and then loads the simulator.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { startFakeProvider } = await import('../src/providers/fake-server/index.ts');
const fake = await startFakeProvider(workerData);
parentPort.on('message', () => {
  void fake.close().then(() => parentPort.close());
});
parentPort.postMessage({ url: fake.url });
