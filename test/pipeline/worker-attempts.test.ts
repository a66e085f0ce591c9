import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { stopForecaster } from '../../src/scheduler/forecaster.ts';
import { startScheduler } from '../../src/scheduler/scheduler.ts';
import type { Db } from '../../src/store/db.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';
import { capturedLog, holdableStorage, localStorage, workerContext } from '../helpers/worker.ts';
import { useOneKeyProvider } from '../helpers/fake-provider.ts';
import { submitRequest } from '../helpers/submit-request.ts';

async function submit(db: Db, config: Config, userId: string, plan: string, prompt: string): Promise<string> {
  const r = await submitTask(
    db,
    config,
    submitRequest(userId, { type: 'gen', plan, prompt, requestHash: `${userId}:${prompt}` }),
  );
  return r.body.id;
}

async function taskState(db: Db, taskId: string): Promise<string> {
  const { rows } = await db.query<{ state: string }>('SELECT state FROM tasks WHERE id = $1', [taskId]);
  return rows[0]!.state;
}

async function heartbeatAt(db: Db, workerId: string): Promise<number> {
  const { rows } = await db.query<{ ms: number }>(
    `SELECT (extract(epoch FROM heartbeat_at) * 1000)::float8 AS ms FROM workers WHERE id = $1`,
    [workerId],
  );
  return rows[0]?.ms ?? 0;
}

describeEachDb('a worker attempt', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  const fake = useOneKeyProvider({ concurrency: 100, latencyMs: 5 });
  before(() => {
    db = t.db;
  });

  it('does not call the lease of a job it already recorded lost', async () => {
    const config = testConfig({
      plans: { three: { images: 3, credits: 3, weight: 1 } },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: 1 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
      // Heartbeats often, so several of them see jobs whose outcome is already written.
      worker: { concurrency: 4, leaseMs: 60_000, heartbeatMs: 30, pollMs: 50 },
    });
    const { log, captured } = capturedLog('info');
    const held = holdableStorage(localStorage());
    const ctx = workerContext(db, config, { log, storage: held.storage });
    // After the first image is stored and recorded, the worker deletes its staged copy: held there.
    const hold = held.hold('delete', () => true);
    const worker = await startWorker(ctx, 'w-heartbeat', 'worker');
    const scheduler = await startScheduler(ctx, 'sched-heartbeat');
    try {
      const taskId = await submit(db, config, 'hb', 'three', 'a quiet street');
      const staged = await hold.reached;
      const recorded = await db.query<{ state: string }>(
        `SELECT state FROM jobs WHERE task_id = $1 AND kind = 'store' AND input->'keys'->>0 = $2`,
        [taskId, staged],
      );
      assert.equal(recorded.rows[0]?.state, 'succeeded', 'the store job is recorded before its cleanup');
      // Two heartbeats while the recorded job is still the worker's: at least one renewal ran after the write.
      const first = await heartbeatAt(db, 'w-heartbeat');
      const second = await waitFor('a heartbeat', async () => {
        const at = await heartbeatAt(db, 'w-heartbeat');
        return at > first ? at : undefined;
      });
      await waitFor('another heartbeat', async () => (await heartbeatAt(db, 'w-heartbeat')) > second);
      hold.release();
      await waitFor('the task to end', async () => (await taskState(db, taskId)) === 'succeeded', {
        timeoutMs: 120_000,
      });
      const alarms = captured.lines.filter((l) => /lease lost/.test(l.msg));
      assert.deepEqual(alarms, [], 'no false lease-lost alarm');
      assert.ok(captured.lines.length > 0, 'the log was captured');
    } finally {
      await scheduler.stop();
      await stopForecaster(ctx);
      await worker.stop(0);
    }
  });

  it('reports a provider call that hangs past its timeout as a timeout, on every attempt', async () => {
    const jobs = 12;
    const response = await fetch(`${fake().url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'main', faults: Array(jobs).fill('hang') }),
    });
    assert.equal(response.status, 200);
    const config = testConfig({
      plans: { many: { images: jobs, credits: jobs, weight: 1 } },
      providers: {
        main: {
          type: 'sim',
          baseUrl: fake().url,
          timeoutMs: 30,
          concurrency: 20,
          keys: [{ id: 'k1', rpm: 100_000, concurrency: 20 }],
        },
      },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: 1 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
      limits: { perUserRunningTasks: 5 },
      worker: { concurrency: jobs, maxAttempts: 1, heartbeatMs: 300, pollMs: 50 },
    });
    const ctx = workerContext(db, config);
    const worker = await startWorker(ctx, 'w-timeouts', 'worker');
    const scheduler = await startScheduler(ctx, 'sched-timeouts');
    try {
      const taskId = await submit(db, config, 'to', 'many', 'a call that never answers');
      await waitFor('the task to end', async () => (await taskState(db, taskId)) === 'failed', {
        timeoutMs: 120_000,
      });
      const { rows } = await db.query<{ error: string }>(
        `SELECT error FROM jobs WHERE task_id = $1 AND kind = 'generate' ORDER BY first_index`,
        [taskId],
      );
      assert.equal(rows.length, jobs);
      assert.deepEqual(
        rows.map((r) => r.error).filter((e) => !e.startsWith('timeout: ')),
        [],
        'every hanging call failed as a timeout',
      );
    } finally {
      await scheduler.stop();
      await stopForecaster(ctx);
      await worker.stop(0);
    }
  });
});
