import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { startServer } from '../../src/server.ts';
import { PG_URL, describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, startTestServer, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const HOUR = 3_600_000;

/**
 * Admission is driven by events: with the scheduler's and the workers' fallback polls set to
 * an hour, work still flows, because every outcome (a call's success that creates the next
 * stage's jobs, a store that frees the store slot, a call that frees the key) wakes the
 * scheduler from its own transaction. One key of concurrency 1 and a store of concurrency 1
 * make every one of the ~12 admissions below wait for a completion.
 */
describeEachDb('event-driven admission', (kind) => {
  const t = useTestServer(kind, {
    scheduler: { pollMs: HOUR },
    worker: { pollMs: HOUR, concurrency: 4 },
    providers: {
      main: { concurrency: 1, keys: [{ id: 'k1', rpm: 100_000, concurrency: 1 }], sim: { latencyMs: 5 } },
    },
    pipelines: {
      photography: {
        steps: [
          { name: 'beautify', provider: 'main', calls: 1 },
          { name: 'generate', provider: 'main', batchSize: 1 },
          { name: 'store', concurrency: 1 },
        ],
      },
    },
  });

  it('admits the next job when one finishes, without waiting for a poll', async () => {
    const ids: string[] = [];
    for (const user of ['w1', 'w2', 'w3']) {
      const res = await postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: user,
        type: 'photography',
        plan: 'free',
      });
      assert.equal(res.status, 202);
      ids.push(res.body.id as string);
    }
    // A liveness bound far above the work (a few seconds) and far below the polls (an hour).
    const states = await waitFor(
      'every task to finish',
      async () => {
        const all = await Promise.all(
          ids.map(async (id) => (await getJson(t.server.baseUrl, `/v1/tasks/${id}`)).body),
        );
        return all.every((b) => b.state === 'succeeded') ? all : undefined;
      },
      { timeoutMs: 120_000 },
    );
    for (const s of states) assert.deepEqual(s.progress, { done: 2, failed: 0, total: 2 });
  });
});

/**
 * A worker that joins brings capacity: its registration wakes the scheduler, so tasks queued
 * while no worker ran start at once, not at the next fallback poll (an hour here). Two
 * processes' worth of roles on one database: PostgreSQL only (PGlite belongs to one process).
 */
describe('a worker joining wakes the scheduler', { skip: PG_URL ? false : 'needs PostgreSQL' }, () => {
  it('admits the queued tasks as soon as a worker registers', async () => {
    const overrides = {
      scheduler: { pollMs: HOUR },
      worker: { pollMs: HOUR, concurrency: 4 },
      providers: {
        main: { concurrency: 2, keys: [{ id: 'k1', rpm: 100_000, concurrency: 2 }], sim: { latencyMs: 5 } },
      },
    };
    const api = await startTestServer('postgres', overrides, ['api', 'scheduler']);
    let worker: Awaited<ReturnType<typeof startServer>> | undefined;
    try {
      const ids: string[] = [];
      for (const user of ['j1', 'j2']) {
        const res = await postJson(api.baseUrl, '/v1/tasks', {
          user_id: user,
          type: 'photography',
          plan: 'free',
        });
        assert.equal(res.status, 202);
        ids.push(res.body.id as string);
      }
      // The scheduler has seen the submits (a pass ran: leader elected) and found no worker.
      await waitFor('a scheduler leader', async () => api.scheduler?.isLeader() || undefined, {
        timeoutMs: 60_000,
      });
      await api.scheduler!.tick();
      const { rows } = await api.ctx.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM jobs WHERE state <> 'queued'`,
      );
      assert.equal(rows[0]!.n, 0, 'nothing can be admitted without a worker');
      worker = await startServer(api.config, { roles: ['worker'], log: pino({ level: 'silent' }) });
      await waitFor(
        'the queued tasks to finish once a worker joined',
        async () => {
          const all = await Promise.all(
            ids.map(async (id) => (await getJson(api.baseUrl, `/v1/tasks/${id}`)).body),
          );
          return all.every((b) => b.state === 'succeeded') || undefined;
        },
        { timeoutMs: 120_000 },
      );
    } finally {
      await worker?.stop();
      await api.stop();
    }
  });
});
