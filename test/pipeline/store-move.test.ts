import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { synthesizeImage } from '../../src/images/synth.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { stopForecaster } from '../../src/scheduler/forecaster.ts';
import { startScheduler } from '../../src/scheduler/scheduler.ts';
import { createLocalStorage, type LocalStorage } from '../../src/storage/local.ts';
import type { Storage } from '../../src/storage/types.ts';
import type { Db } from '../../src/store/db.ts';
import { storeOne } from '../../src/worker/store-images.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { tempDir, testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { submitRequest } from '../helpers/submit-request.ts';
import { waitFor } from '../helpers/wait.ts';
import { deferred, workerContext } from '../helpers/worker.ts';

/**
 * Local storage renames a staged image into place instead of writing it again
 * (src/worker/store-images.ts). A store attempt that moved its images and died before its
 * outcome committed leaves them at their final keys and no staged copy: the next attempt must
 * find them there and store the same images, once each.
 */

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

function config(): Config {
  return testConfig({
    plans: { three: { images: 3, credits: 3, weight: 1 } },
    pipelines: {
      gen: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 3 },
          { name: 'store', concurrency: 3 },
        ],
      },
    },
    // One slot: after its moves, the dying worker's next transaction is the store outcome. Leases
    // long and heartbeats far apart: the test decides when the lease runs out.
    worker: { concurrency: 1, leaseMs: 120_000, heartbeatMs: 60_000, pollMs: 50, maxAttempts: 3 },
  });
}

/**
 * The database as a worker process sees it that dies once `arm()` was called: the next
 * transaction runs its statements and fails instead of committing (rolled back, as a process
 * killed before COMMIT), and every statement after it fails (no outcome, no heartbeat).
 */
function dyingDb(db: Db) {
  let armed = false;
  let dead = false;
  const died = deferred();
  const alive = () => {
    if (dead) throw new Error('this worker process is gone');
  };
  const wrapped: Db = {
    kind: db.kind,
    query: async (sql, params) => {
      alive();
      return db.query(sql, params);
    },
    exec: async (sql) => {
      alive();
      return db.exec(sql);
    },
    transaction: async (fn) => {
      alive();
      return db.transaction(async (tx) => {
        const result = await fn(tx);
        if (armed) {
          dead = true;
          died.resolve();
          throw new Error('killed between the move and the COMMIT');
        }
        return result;
      });
    },
    listen: (channel, handler) => db.listen(channel, handler),
    notify: async (channel, payload) => {
      alive();
      return db.notify(channel, payload);
    },
    close: async () => {},
  };
  return { db: wrapped, died: died.promise, arm: () => (armed = true) };
}

/** Local storage that records the bytes each move carried and arms `onMove` after it. */
function recordingMoves(inner: LocalStorage, onMove: () => void) {
  const moved = new Map<string, string>();
  const storage: Storage = {
    ...inner,
    driver: inner.driver,
    move: async (from, to) => {
      const bytes = await inner.get(from);
      await inner.move(from, to);
      moved.set(to, sha(bytes));
      onMove();
    },
  };
  return { storage, moved };
}

describeEachDb('a crash between moving a staged image into place and the commit', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  before(() => {
    db = t.db;
  });

  it('the next attempt stores the same images from their final place: nothing lost, nothing twice', async () => {
    const cfg = config();
    const files = path.join(tempDir(), 'files');
    const local = createLocalStorage({ dir: files, signingSecret: 'test-secret' });
    const dying = dyingDb(db);
    const { storage, moved } = recordingMoves(local, dying.arm);
    const healthy = workerContext(db, cfg, { storage: local });
    const scheduler = await startScheduler(healthy, 's-move');
    const first = await startWorker(workerContext(dying.db, cfg, { storage }), 'w-dies', 'worker');
    let second: Awaited<ReturnType<typeof startWorker>> | undefined;
    try {
      const { body } = await submitTask(
        db,
        cfg,
        submitRequest('mover', { type: 'gen', plan: 'three', prompt: 'moved once', requestHash: 'mover' }),
      );
      const taskId = body.id;
      await dying.died;

      // The first attempt moved all three originals and wrote their thumbnails, then died.
      assert.equal(moved.size, 3);
      const work = path.join(files, 'work', taskId, 'generate');
      assert.deepEqual(await readdir(work), [], 'no staged copy is left');
      const images = async () =>
        (
          await db.query<{ index: number; storage_key: string; sha256: string; bytes: number }>(
            'SELECT index, storage_key, sha256, bytes FROM images WHERE task_id = $1 ORDER BY index',
            [taskId],
          )
        ).rows;
      assert.deepEqual(await images(), [], 'its outcome never committed');
      const storeJob = async () =>
        (
          await db.query<{ id: string; state: string; attempts: number }>(
            `SELECT id, state, attempts FROM jobs WHERE task_id = $1 AND kind = 'store'`,
            [taskId],
          )
        ).rows[0]!;
      assert.equal((await storeJob()).state, 'running');

      // Its lease runs out; the reaper puts the job back and another worker takes it.
      await db.query(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [
        (await storeJob()).id,
      ]);
      second = await startWorker(healthy, 'w-next', 'worker');
      const task = await waitFor(
        'the task to end',
        async () =>
          (
            await db.query<{ state: string; images_done: number; images_failed: number }>(
              `SELECT state, images_done, images_failed FROM tasks WHERE id = $1 AND state NOT IN ('queued', 'running')`,
              [taskId],
            )
          ).rows[0],
        { timeoutMs: 120_000 },
      );
      assert.deepEqual(task, { state: 'succeeded', images_done: 3, images_failed: 0 });
      assert.deepEqual(
        { state: (await storeJob()).state, attempts: (await storeJob()).attempts },
        { state: 'succeeded', attempts: 2 },
      );

      // Each image once, recorded with the bytes the first attempt moved, which are on disk.
      const rows = await images();
      assert.deepEqual(
        rows.map((r) => r.index),
        [0, 1, 2],
      );
      for (const row of rows) {
        const onDisk = await readFile(local.resolvePath(row.storage_key));
        assert.equal(row.sha256, moved.get(row.storage_key), row.storage_key);
        assert.equal(sha(onDisk), row.sha256, row.storage_key);
        assert.equal(onDisk.length, row.bytes);
      }
      assert.deepEqual((await readdir(path.join(files, 'tasks', taskId))).sort(), [
        '0000.png',
        '0000.thumb.webp',
        '0001.png',
        '0001.thumb.webp',
        '0002.png',
        '0002.thumb.webp',
      ]);
      assert.deepEqual(await readdir(work), []);
      assert.equal(local.stats().moves, 3, 'the retry moved nothing: the images were in place');
    } finally {
      await second?.stop(0);
      await first.stop(0);
      await scheduler.stop();
      await stopForecaster(healthy);
    }
  });
});

describe('storing one staged image', () => {
  const png = () => synthesizeImage({ prompt: 'p', index: 0, seed: 1, width: 32, height: 32 });

  it('moves it into place with a storage that moves, puts a copy (deleted later) with one that cannot', async () => {
    const local = createLocalStorage({ dir: path.join(tempDir(), 'one'), signingSecret: 's' });
    const data = await png();
    await local.put('work/t1/generate/0000.png', data, 'image/png');
    const moved = await storeOne(local, 't1', 'work/t1/generate/0000.png', 0, false);
    assert.equal(moved.kind, 'stored');
    assert.equal(moved.kind === 'stored' && moved.staged, undefined, 'nothing left to delete');
    assert.equal(local.stats().moves, 1);

    const { move: _move, ...noMove } = local;
    const copying: Storage = { ...noMove, driver: 'local' };
    await local.put('work/t1/generate/0001.png', data, 'image/png');
    const copied = await storeOne(copying, 't1', 'work/t1/generate/0001.png', 1, false);
    assert.equal(copied.kind === 'stored' && copied.staged, 'work/t1/generate/0001.png');
    assert.equal(local.stats().moves, 1);
    assert.deepEqual(await local.get('tasks/t1/0001.png'), data);
    assert.deepEqual(
      await local.get('work/t1/generate/0001.png'),
      data,
      'the caller deletes it after the commit',
    );
  });

  it('keeps an image another attempt of the job moved between this one’s read and its move', async () => {
    const local = createLocalStorage({ dir: path.join(tempDir(), 'race'), signingSecret: 's' });
    const data = await png();
    await local.put('work/t1/generate/0000.png', data, 'image/png');
    const racing: Storage = {
      ...local,
      driver: 'local',
      // The stale attempt reads the staged copy; the other attempt moves it before this one does.
      get: async (key) => {
        const bytes = await local.get(key);
        if (key.startsWith('work/')) await local.move('work/t1/generate/0000.png', 'tasks/t1/0000.png');
        return bytes;
      },
    };
    const result = await storeOne(racing, 't1', 'work/t1/generate/0000.png', 0, false);
    assert.equal(result.kind, 'stored');
    assert.equal(result.kind === 'stored' && result.image.sha256, sha(data));

    // A different file in place is not taken for this image: the image is owed (retried).
    await local.put('work/t1/generate/0001.png', data, 'image/png');
    const other = await png().then((b) => Buffer.concat([b, Buffer.from('x')]));
    const differing: Storage = {
      ...local,
      driver: 'local',
      get: async (key) => {
        const bytes = await local.get(key);
        if (key.startsWith('work/')) {
          await local.delete(key);
          await local.put('tasks/t1/0001.png', other, 'image/png');
        }
        return bytes;
      },
    };
    const owed = await storeOne(differing, 't1', 'work/t1/generate/0001.png', 1, false);
    assert.equal(owed.kind, 'owed');
  });

  it('a staged copy that is gone and not in place is owed, not a new image', async () => {
    const local = createLocalStorage({ dir: path.join(tempDir(), 'gone'), signingSecret: 's' });
    const result = await storeOne(local, 't1', 'work/t1/generate/0000.png', 0, false);
    assert.equal(result.kind, 'owed');
    assert.match(
      result.kind === 'owed' ? result.message : '',
      /No stored file work\/t1\/generate\/0000\.png/,
    );
  });
});
