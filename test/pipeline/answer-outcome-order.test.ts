/**
 * The server and the planner admit in the same order when a call's answer and its outcome are
 * apart: the provider's slot frees at the answer, the job counts for its user until its outcome
 * is recorded, and the task's next jobs exist only from then on (src/sim/engine.ts `recordMs`).
 * The small task's beautify answer is held before its outcome (its staging write waits), so the
 * pass at the answer must give the slot to the big task although the small one has less work
 * left; the planner with the outcome after the answer predicts that order, the planner with the
 * outcome at the answer (recordMs 0) does not.
 */
import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { submitTask } from '../../src/pipeline/submit.ts';
import { stopForecaster } from '../../src/scheduler/forecaster.ts';
import { startScheduler } from '../../src/scheduler/scheduler.ts';
import { simulate } from '../../src/sim/engine.ts';
import { parseScenario } from '../../src/sim/scenario.ts';
import type { Db } from '../../src/store/db.ts';
import { startWorker } from '../../src/worker/worker.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { useOneKeyProvider } from '../helpers/fake-provider.ts';
import { submitRequest } from '../helpers/submit-request.ts';
import { waitFor } from '../helpers/wait.ts';
import { holdableStorage, localStorage, workerContext } from '../helpers/worker.ts';

/** The provider calls in the order the planner admits them, as "plan step". */
function plannerOrder(config: Config, recordMs: number): string[] {
  const order: string[] = [];
  const plans = new Map<string, string>();
  simulate(
    config,
    parseScenario({
      arrivals: [{ burst: { users: 1, plan: 'small' } }, { burst: { users: 1, plan: 'big' } }],
      type: 'photography',
      latency: { beautify: 1000, generate: 1000, store: 100 },
      recordMs,
    }),
    {
      onDecision: (input, decision) => {
        // The first burst group's user (g0b-…) has the small task.
        for (const t of input.tasks) plans.set(t.id, t.userId.startsWith('g0b') ? 'small' : 'big');
        for (const a of decision.admissions) {
          if (a.resource !== 'main') continue;
          const step = a.jobId.split('.')[1] === '0' ? 'beautify' : 'generate';
          order.push(`${plans.get(a.taskId)} ${step}`);
        }
      },
    },
  );
  return order;
}

describeEachDb('answer and outcome', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  const fake = useOneKeyProvider({ concurrency: 1, latencyMs: 20 });
  before(() => {
    db = t.db;
  });

  it('the slot an answer frees goes to the other user while the answer is recorded, as the planner says', async () => {
    const config = testConfig({
      plans: { small: { images: 2, credits: 0, weight: 1 }, big: { images: 4, credits: 0, weight: 1 } },
      providers: {
        main: {
          type: 'sim',
          baseUrl: fake().url,
          concurrency: 1,
          keys: [{ id: 'k1', rpm: 100_000, concurrency: 1 }],
        },
      },
      pipelines: {
        photography: {
          steps: [
            { name: 'beautify', provider: 'main', calls: 1 },
            { name: 'generate', provider: 'main', batchSize: 4 },
            { name: 'store', concurrency: 10 },
          ],
        },
      },
      worker: { concurrency: 4, pollMs: 50 },
    });
    // Both queued before the scheduler's first pass, as the planner's burst.
    const submit = async (userId: string, plan: string) =>
      (
        await submitTask(
          db,
          config,
          submitRequest(userId, { type: 'photography', plan, prompt: userId, requestHash: userId }),
        )
      ).body.id;
    const small = await submit('order-small', 'small');
    const big = await submit('order-big', 'big');
    const held = holdableStorage(localStorage());
    // Each task's beautify: answered, its outcome (after this staging write) held. The big one's
    // is released after the small one's, as in the planner's schedule (outcome at 1.1 s, the big
    // call's answer at 2 s).
    const hold = held.hold('put', (key) => key.startsWith(`work/${small}/beautify/`));
    const holdBig = held.hold('put', (key) => key.startsWith(`work/${big}/beautify/`));
    const ctx = workerContext(db, config, { storage: held.storage });
    const worker = await startWorker(ctx, 'w-order', 'worker');
    const scheduler = await startScheduler(ctx, 'sched-order');
    try {
      await hold.reached;
      const during = await waitFor('the big task to get the provider', async () => {
        const { rows } = await db.query<{
          task_id: string;
          step_name: string;
          state: string;
          answered: boolean;
        }>(
          `SELECT task_id, step_name, state, provider_done_at IS NOT NULL AS answered FROM jobs
            WHERE task_id = ANY($1::text[]) AND kind <> 'store' AND admitted_at IS NOT NULL`,
          [[small, big]],
        );
        return rows.some((r) => r.task_id === big) ? rows : undefined;
      });
      const smallBeautify = during.find((r) => r.task_id === small && r.step_name === 'beautify')!;
      assert.equal(smallBeautify.state, 'running', "the small task's outcome is not recorded yet");
      assert.equal(smallBeautify.answered, true, 'its answer is in: the provider slot is free');
      await holdBig.reached;
      hold.release();
      await waitFor("the small task's generate call", async () => {
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM jobs WHERE task_id = $1 AND kind = 'generate' AND admitted_at IS NOT NULL`,
          [small],
        );
        return rows[0]!.n === 1;
      });
      holdBig.release();
      await waitFor('both tasks to succeed', async () => {
        const { rows } = await db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1::text[]) AND state = 'succeeded'`,
          [[small, big]],
        );
        return rows[0]!.n === 2;
      });
      const { rows } = await db.query<{ task_id: string; step_name: string }>(
        `SELECT task_id, step_name FROM jobs WHERE task_id = ANY($1::text[]) AND kind <> 'store'
          ORDER BY admitted_at, id`,
        [[small, big]],
      );
      const server = rows.map((r) => `${r.task_id === small ? 'small' : 'big'} ${r.step_name}`);
      assert.deepEqual(server, ['small beautify', 'big beautify', 'small generate', 'big generate']);
      assert.deepEqual(plannerOrder(config, 100), server);
      assert.notDeepEqual(
        plannerOrder(config, 0),
        server,
        'the outcome at the answer predicts another order',
      );
    } finally {
      hold.release();
      holdBig.release();
      await scheduler.stop();
      await stopForecaster(ctx);
      await worker.stop(0);
    }
  });
});
