import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { testConfigInput } from '../helpers/config.ts';
import { freePort, spawnDarkroom, waitReady, writeConfigFile } from '../helpers/process.ts';
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
      // Calls of an hour: a stop that waited for them would never return (the test would time out).
      providers: { main: { sim: { latencyMs: 3_600_000, jitterMs: 0 } } },
      pipelines: PIPELINE,
    });
    try {
      await postJson(server.baseUrl, '/v1/tasks', { user_id: 'g2', type: 'photography', plan: 'start' });
      const { db } = server.ctx;
      const running = await waitFor('a running job', async () => {
        const r = await db.query<{ id: string }>(`SELECT id FROM jobs WHERE state = 'running'`);
        return r.rows.length > 0 ? r.rows.map((x) => x.id) : undefined;
      });
      await server.worker!.stop(300);
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

/**
 * A real `darkroom serve` process with an SSE client connected: SIGTERM must end the stream and
 * the process, and the worker must reach its grace logic (a call still running at the deadline is
 * released without spending its attempt). Fastify's close() used to wait for the stream forever.
 */
describe(
  'SIGTERM with an event stream open',
  { skip: PG_URL ? false : 'needs PostgreSQL (the test reads the jobs while the process runs)' },
  () => {
    it('closes the stream, releases the running call after the grace period and exits', async () => {
      const { url: databaseUrl, drop } = await createPostgresDatabase();
      const port = await freePort();
      const file = writeConfigFile({
        ...testConfigInput({
          server: { port, logLevel: 'warn' },
          providers: { main: { sim: { latencyMs: 600_000, jitterMs: 0 } } },
          pipelines: PIPELINE,
          worker: { shutdownGraceMs: 500 },
        }),
        database: { url: databaseUrl },
      });
      const base = `http://127.0.0.1:${port}`;
      const proc = spawnDarkroom(['serve', '--config', file]);
      const client = new pg.Client({ connectionString: databaseUrl });
      client.on('error', () => {});
      try {
        await waitReady(base, proc, 120_000);
        await client.connect();
        const submitted = await postJson(base, '/v1/tasks', {
          user_id: 's1',
          type: 'photography',
          plan: 'start',
        });
        const taskId = (submitted.body as { id: string }).id;
        const running = await waitFor(
          'a running provider call',
          async () => {
            const r = await client.query<{ id: string }>(
              `SELECT id FROM jobs WHERE task_id = $1 AND state = 'running'`,
              [taskId],
            );
            return r.rows.length > 0 ? r.rows.map((x) => x.id) : undefined;
          },
          { timeoutMs: 120_000 },
        );

        const res = await fetch(`${base}/v1/tasks/${taskId}/events`);
        assert.equal(res.status, 200);
        let text = '';
        const decoder = new TextDecoder();
        const reader = res.body!.getReader();
        const streamEnded = (async () => {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) return true;
            text += decoder.decode(value, { stream: true });
          }
        })().catch(() => false);
        await waitFor('the first event', () => text.includes('event: state'), { timeoutMs: 60_000 });

        proc.kill('SIGTERM');
        const exit = await Promise.race([
          proc.exited,
          new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 120_000).unref()),
        ]);
        assert.equal(exit, 0, `exit after SIGTERM: ${exit}\n${proc.output()}`);
        assert.equal(await streamEnded, true, 'the event stream ended');
        assert.match(text, /event: closing\n/, 'the stream said why it ends');

        const { rows } = await client.query<{ state: string; attempts: number; worker_id: string | null }>(
          'SELECT state, attempts, worker_id FROM jobs WHERE id = ANY($1::text[])',
          [running],
        );
        for (const r of rows) assert.deepEqual(r, { state: 'queued', attempts: 0, worker_id: null });
      } finally {
        proc.kill('SIGKILL');
        await proc.exited;
        await client.end().catch(() => {});
        await drop();
      }
    });
  },
);
