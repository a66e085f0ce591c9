import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startTestServer } from '../helpers/server.ts';
import { postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const PIPELINE = {
  photography: {
    steps: [
      { name: 'generate', provider: 'main', batchSize: 5 },
      { name: 'store', concurrency: 5 },
    ],
  },
};

describe('graceful worker shutdown', () => {
  it('lets running jobs finish within the grace period', async () => {
    const server = await startTestServer('pglite', {
      providers: { main: { sim: { latencyMs: 400, jitterMs: 0 } } },
      pipelines: PIPELINE,
    });
    try {
      await postJson(server.baseUrl, '/v1/tasks', { user_id: 'g1', type: 'photography', plan: 'start' });
      const { db } = server.ctx;
      const running = await waitFor('a running job', async () => {
        const r = await db.query<{ id: string }>(`SELECT id FROM jobs WHERE state = 'running'`);
        return r.rows.length > 0 ? r.rows.map((x) => x.id) : undefined;
      });
      await server.worker!.stop(10_000);
      const { rows } = await db.query<{ state: string; attempts: number }>(
        'SELECT state, attempts FROM jobs WHERE id = ANY($1::text[])',
        [running],
      );
      for (const r of rows) assert.deepEqual(r, { state: 'succeeded', attempts: 1 });
    } finally {
      await server.stop();
    }
  });

  it('releases jobs still running at the deadline without spending their attempt', async () => {
    const server = await startTestServer('pglite', {
      providers: { main: { sim: { latencyMs: 20_000, jitterMs: 0 } } },
      pipelines: PIPELINE,
    });
    try {
      await postJson(server.baseUrl, '/v1/tasks', { user_id: 'g2', type: 'photography', plan: 'start' });
      const { db } = server.ctx;
      const running = await waitFor('a running job', async () => {
        const r = await db.query<{ id: string }>(`SELECT id FROM jobs WHERE state = 'running'`);
        return r.rows.length > 0 ? r.rows.map((x) => x.id) : undefined;
      });
      const t0 = Date.now();
      await server.worker!.stop(300);
      assert.ok(Date.now() - t0 < 5000, 'stop returned soon after the grace period');
      const { rows } = await db.query<{ state: string; attempts: number; worker_id: string | null }>(
        'SELECT state, attempts, worker_id FROM jobs WHERE id = ANY($1::text[])',
        [running],
      );
      for (const r of rows) assert.deepEqual(r, { state: 'queued', attempts: 0, worker_id: null });
      const workers = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM workers');
      assert.equal(workers.rows[0]!.n, 0, 'the worker deregistered');
    } finally {
      await server.stop();
    }
  });
});
