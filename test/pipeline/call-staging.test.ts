/**
 * A call's result images are staged at once, not one after another: each put is a file write, an
 * fsync and a rename while the call's slot waits. Storage holds every staged put open; all of a
 * batch's puts must reach it while none has finished.
 */
import { it } from 'node:test';
import { submitTask } from '../../src/pipeline/submit.ts';
import { stopForecaster } from '../../src/scheduler/forecaster.ts';
import { startScheduler } from '../../src/scheduler/scheduler.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdableStorage, localStorage, workerContext } from '../helpers/worker.ts';
import { submitRequest } from '../helpers/submit-request.ts';

describeEachDb('staging a call’s images', (kind) => {
  const t = useTestDb(kind);

  it('writes the images of one call concurrently', async () => {
    const config = testConfig({
      plans: { three: { images: 3, credits: 3, weight: 1 } },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: 3 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
      worker: { concurrency: 4, pollMs: 50 },
    });
    const held = holdableStorage(localStorage());
    const holds = [0, 1, 2].map((i) =>
      held.hold('put', (key) => key.endsWith(`/generate/${String(i).padStart(4, '0')}.png`)),
    );
    const ctx = workerContext(t.db, config, { storage: held.storage });
    const worker = await startWorker(ctx, 'w-staging', 'worker');
    const scheduler = await startScheduler(ctx, 'sched-staging');
    try {
      const { body } = await submitTask(
        t.db,
        config,
        submitRequest('u', {
          type: 'gen',
          plan: 'three',
          prompt: 'three at once',
          requestHash: 'u:three at once',
        }),
      );
      // Sequential staging would never start the second put while the first is held.
      const started = new Set<string>();
      for (const h of holds) void h.reached.then((key) => started.add(key));
      await waitFor('all three puts to start', () => started.size === 3);
      for (const h of holds) h.release();
      await waitFor('the task to succeed', async () => {
        const { rows } = await t.db.query<{ state: string }>('SELECT state FROM tasks WHERE id = $1', [
          body.id,
        ]);
        return rows[0]?.state === 'succeeded';
      });
    } finally {
      for (const h of holds) h.release();
      await scheduler.stop();
      await stopForecaster(ctx);
      await worker.stop(0);
    }
  });
});
