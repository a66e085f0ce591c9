import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
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
