import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { createProviders } from '../../src/providers/registry.ts';
import type { ProviderAdapter } from '../../src/providers/types.ts';
import { stopForecaster } from '../../src/scheduler/forecaster.ts';
import { startScheduler } from '../../src/scheduler/scheduler.ts';
import type { Storage } from '../../src/storage/types.ts';
import type { Db } from '../../src/store/db.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdableStorage, localStorage, workerContext } from '../helpers/worker.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * Store jobs hold the images one call returned, cut at the store's concurrency, and are stored
 * at once and recorded in one transaction. Real worker, scheduler, storage and sharp; the
 * provider is the in-process simulator, wrapped where a test needs it to misbehave.
 */

function config(storeConcurrency: number, images = 5): Config {
  return testConfig({
    plans: { five: { images, credits: 10, weight: 1 } },
    pipelines: {
      gen: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 5 },
          { name: 'store', concurrency: storeConcurrency },
        ],
      },
    },
    worker: { concurrency: 4, maxAttempts: 3, backoffBaseMs: 10, backoffMaxMs: 20, pollMs: 50 },
  });
}

async function submit(db: Db, cfg: Config, userId: string): Promise<string> {
  const r = await submitTask(
    db,
    cfg,
    submitRequest(userId, {
      type: 'gen',
      plan: 'five',
      prompt: `store batches for ${userId}`,
      requestHash: userId,
    }),
  );
  return r.body.id;
}

interface Ended {
  state: string;
  images_done: number;
  images_failed: number;
  credits_refunded: number;
  error: string | null;
}

async function run<T>(
  db: Db,
  cfg: Config,
  name: string,
  opts: { storage?: Storage; providers?: Map<string, ProviderAdapter> },
  body: (taskId: string) => Promise<T>,
): Promise<{ task: Ended; out: T; taskId: string }> {
  const ctx = workerContext(db, cfg, opts);
  const worker = await startWorker(ctx, `w-${name}`, 'worker');
  const scheduler = await startScheduler(ctx, `s-${name}`);
  try {
    const taskId = await submit(db, cfg, name);
    const out = await body(taskId);
    const task = await waitFor(
      'the task to end',
      async () => {
        const { rows } = await db.query<Ended>(
          `SELECT state, images_done, images_failed, credits_refunded, error FROM tasks
            WHERE id = $1 AND state NOT IN ('queued', 'running')`,
          [taskId],
        );
        return rows[0];
      },
      { timeoutMs: 120_000 },
    );
    return { task, out, taskId };
  } finally {
    await scheduler.stop();
    await stopForecaster(ctx);
    await worker.stop(0);
  }
}

async function storeJobs(db: Db, taskId: string) {
  const { rows } = await db.query<{ first_index: number; count: number; attempts: number; state: string }>(
    `SELECT first_index, count, attempts, state FROM jobs WHERE task_id = $1 AND kind = 'store' ORDER BY first_index`,
    [taskId],
  );
  return rows;
}

async function progressEvents(db: Db, taskId: string) {
  const { rows } = await db.query<{ data: { done: number; failed: number } }>(
    `SELECT data FROM events WHERE task_id = $1 AND type = 'progress' ORDER BY id`,
    [taskId],
  );
  return rows.map((r) => [r.data.done, r.data.failed]);
}

describeEachDb('store jobs of several images', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  before(() => {
    db = t.db;
  });

  it('stores a batch in jobs of at most the store concurrency, each job’s images at once', async () => {
    const cfg = config(2);
    const held = holdableStorage(localStorage());
    // The first store job holds images 0 and 1: both reach storage before either is let go.
    const first = held.hold('get', (k) => k.endsWith('/generate/0000.png'));
    const second = held.hold('get', (k) => k.endsWith('/generate/0001.png'));
    const { task, taskId } = await run(db, cfg, 'split', { storage: held.storage }, async () => {
      await Promise.all([first.reached, second.reached]);
      first.release();
      second.release();
    });
    assert.equal(task.state, 'succeeded');
    assert.equal(task.images_done, 5);
    // Before: five store jobs of one image. Now a 5-image batch with store concurrency 2: 2 + 2 + 1.
    assert.deepEqual(
      (await storeJobs(db, taskId)).map((j) => [j.first_index, j.count, j.state]),
      [
        [0, 2, 'succeeded'],
        [2, 2, 'succeeded'],
        [4, 1, 'succeeded'],
      ],
    );
    // One progress event per store job.
    assert.equal((await progressEvents(db, taskId)).length, 3);
    const images = await db.query<{ index: number }>(
      'SELECT index FROM images WHERE task_id = $1 ORDER BY index',
      [taskId],
    );
    assert.deepEqual(
      images.rows.map((r) => r.index),
      [0, 1, 2, 3, 4],
    );
  });

  it('retries only the image whose storing failed, and counts each image once', async () => {
    const cfg = config(5);
    const inner = localStorage();
    let failed = 0;
    const storage: Storage = {
      ...inner,
      driver: inner.driver,
      put: (k, d, m) => inner.put(k, d, m),
      get: async (k) => {
        // The staged copy of image 2 cannot be read the first time (a storage hiccup).
        if (k.endsWith('/generate/0002.png') && failed++ === 0) throw new Error('storage hiccup');
        return inner.get(k);
      },
      delete: (k) => inner.delete(k),
      url: (k, s) => inner.url(k, s),
    };
    const { task, taskId } = await run(db, cfg, 'transient', { storage }, async () => {});
    assert.equal(task.state, 'succeeded');
    assert.equal(task.images_done, 5);
    assert.equal(task.images_failed, 0);
    const jobs = await storeJobs(db, taskId);
    // One job: its first attempt stored 0, 1, 3, 4 and shrank to image 2, stored by its second.
    assert.deepEqual(
      jobs.map((j) => [j.first_index, j.count, j.attempts, j.state]),
      [[0, 1, 2, 'succeeded']],
    );
    const input = await db.query<{ input: { keys: string[]; indices: number[] } }>(
      `SELECT input FROM jobs WHERE task_id = $1 AND kind = 'store'`,
      [taskId],
    );
    assert.deepEqual(input.rows[0]!.input.indices, [2]);
    assert.deepEqual(await progressEvents(db, taskId), [
      [4, 0],
      [5, 0],
    ]);
    const n = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM images WHERE task_id = $1', [
      taskId,
    ]);
    assert.equal(n.rows[0]!.n, 5);
  });

  it('fails only the image that is not an image, delivers the others and refunds that one', async () => {
    const cfg = config(5);
    const inner = createProviders(cfg, 1).get('main')!;
    const corrupting: ProviderAdapter = {
      type: inner.type,
      async call(call) {
        const out = await inner.call(call);
        if (out.kind !== 'success') return out;
        // Image 3 comes back as bytes that are not an image (labelled PNG).
        const images = out.images.map((img, i) =>
          call.firstIndex + i === 3
            ? { data: Buffer.from('<html>quota page</html>'), mime: 'image/png' }
            : img,
        );
        return { ...out, images };
      },
    };
    const { task, taskId } = await run(
      db,
      cfg,
      'rejected',
      { providers: new Map([['main', corrupting]]) },
      async () => {},
    );
    assert.equal(task.state, 'partial');
    assert.equal(task.images_done, 4);
    assert.equal(task.images_failed, 1);
    // 10 credits for 5 images: one undelivered image refunds 2.
    assert.equal(task.credits_refunded, 2);
    assert.match(task.error ?? '', /not an image|unsupported image/i);
    const jobs = await storeJobs(db, taskId);
    assert.deepEqual(
      jobs.map((j) => [j.count, j.attempts, j.state]),
      [[5, 1, 'succeeded']],
      'one attempt: a rejected image is not retried',
    );
    const images = await db.query<{ index: number }>(
      'SELECT index FROM images WHERE task_id = $1 ORDER BY index',
      [taskId],
    );
    assert.deepEqual(
      images.rows.map((r) => r.index),
      [0, 1, 2, 4],
    );
  });
});
