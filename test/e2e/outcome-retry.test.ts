import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { ProviderAdapter, ProviderOutcome } from '../../src/providers/types.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { testConfig } from '../helpers/config.ts';
import { postJson } from '../helpers/server.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

/** A promise with its resolve function outside. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Log lines (pino JSON) the server wrote, kept for the test to look at. */
function capturedLog() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n'))
        if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: pino({ level: 'debug' }, stream) };
}

/**
 * The simulator's adapter behind a gate: each call is counted, announced on `entered`, and held
 * until `release` before the simulator answers.
 */
function gateProvider(server: RunningServer, name: string) {
  const inner = server.ctx.providers.get(name)!;
  const entered = deferred();
  const gate = deferred();
  const state = { calls: 0 };
  const gated: ProviderAdapter = {
    ...inner,
    async call(req): Promise<ProviderOutcome> {
      state.calls++;
      entered.resolve();
      await gate.promise;
      return inner.call(req);
    },
  };
  server.ctx.providers.set(name, gated);
  return { state, entered: entered.promise, release: gate.resolve };
}

const PIPELINES = {
  photography: {
    steps: [
      { name: 'generate', provider: 'main', batchSize: 5 },
      { name: 'store', concurrency: 5 },
    ],
  },
};

describe('outcome writes survive a lost database connection [postgres]', { skip: !PG_URL }, () => {
  async function start(leaseMs: number) {
    const created = await createPostgresDatabase();
    const target = new URL(created.url);
    const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
    const { lines, log } = capturedLog();
    const config = testConfig({
      database: { url: proxy.url(created.url) },
      pipelines: PIPELINES,
      worker: { leaseMs, heartbeatMs: Math.floor(leaseMs / 10) },
    });
    const server = await startServer(config, { log });
    const stop = async () => {
      proxy.restore();
      await server.stop();
      await proxy.close();
      await created.drop();
    };
    return { server, proxy, lines, stop };
  }

  /** Cuts the database off while the provider call is held, then lets the call return. */
  async function cutAroundTheCall(
    server: RunningServer,
    proxy: TcpProxy,
    lines: Array<Record<string, unknown>>,
  ) {
    const gated = gateProvider(server, 'main');
    const submitted = await postJson(server.url!, '/v1/tasks', {
      user_id: 'u1',
      type: 'photography',
      plan: 'free',
    });
    assert.equal(submitted.status, 202);
    const taskId = (submitted.body as { id: string }).id;
    await gated.entered;
    const { rows } = await server.ctx.db.query<{ id: string }>(
      `SELECT id FROM jobs WHERE task_id = $1 AND state = 'running'`,
      [taskId],
    );
    const jobId = rows[0]!.id;
    proxy.cut();
    gated.release();
    // The worker has tried to write the outcome once the job shows up in a warning or error.
    await waitFor(
      'the outcome write to fail on the cut connection',
      () => lines.some((l) => (l.level as number) >= 40 && l.jobId === jobId),
      { timeoutMs: 120_000 },
    );
    return { gated, taskId, jobId };
  }

  it('keeps a result already paid for: one provider call, no attempt spent', async () => {
    const { server, proxy, lines, stop } = await start(60_000);
    try {
      const { gated, taskId, jobId } = await cutAroundTheCall(server, proxy, lines);
      proxy.restore();
      const task = await waitFor(
        'the task to finish',
        async () => {
          const r = await server.ctx.db.query<{ state: string; images_done: number }>(
            'SELECT state, images_done FROM tasks WHERE id = $1',
            [taskId],
          );
          const t = r.rows[0];
          return t && t.state !== 'queued' && t.state !== 'running' ? t : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 200 },
      );
      assert.equal(gated.state.calls, 1, 'the provider was called once');
      assert.deepEqual(task, { state: 'succeeded', images_done: 2 });
      const job = await server.ctx.db.query<{ state: string; attempts: number }>(
        'SELECT state, attempts FROM jobs WHERE id = $1',
        [jobId],
      );
      assert.deepEqual(job.rows[0], { state: 'succeeded', attempts: 1 });
    } finally {
      await stop();
    }
  });

  it('stops retrying once the lease is gone; the reaper hands the job on and nothing is recorded twice', async () => {
    const { server, proxy, lines, stop } = await start(3_000);
    try {
      const { gated, taskId, jobId } = await cutAroundTheCall(server, proxy, lines);
      await waitFor(
        'the worker to give the outcome up with its lease',
        () => lines.some((l) => l.jobId === jobId && String(l.msg).includes('lease ran out')),
        { timeoutMs: 120_000 },
      );
      proxy.restore();
      const task = await waitFor(
        'the task to finish',
        async () => {
          const r = await server.ctx.db.query<{ state: string; images_done: number }>(
            'SELECT state, images_done FROM tasks WHERE id = $1',
            [taskId],
          );
          const t = r.rows[0];
          return t && t.state !== 'queued' && t.state !== 'running' ? t : undefined;
        },
        { timeoutMs: 180_000, intervalMs: 200 },
      );
      assert.deepEqual(task, { state: 'succeeded', images_done: 2 });
      assert.equal(gated.state.calls, 2, 'the attempt whose lease ran out was called again');
      const images = await server.ctx.db.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM images WHERE task_id = $1',
        [taskId],
      );
      assert.equal(images.rows[0]!.n, 2, 'each image recorded once');
    } finally {
      await stop();
    }
  });
});
