import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

describeEachDb('deadlines', (kind) => {
  const t = useTestServer(kind, {
    limits: { perUserRunningTasks: 1 },
    plans: {
      free: { images: 2, credits: 2, weight: 1 },
      pro: { images: 70, credits: 70, weight: 1 },
      tryon: { images: 2, credits: 2, weight: 1, deadlineSeconds: 1 },
    },
    providers: { main: { sim: { latencyMs: 1500, jitterMs: 0 } } },
  });

  it('cancels a task whose work could not start before its deadline, refunding all, with no provider call', async () => {
    const base = t.server.baseUrl;
    const blocker = await postJson(base, '/v1/tasks', {
      user_id: 'shopper',
      type: 'photography',
      plan: 'pro',
    });
    assert.equal(blocker.status, 202);
    // The shopper's next tasks wait behind their own running one (one running task per user).
    const explicit = await postJson(base, '/v1/tasks', {
      user_id: 'shopper',
      type: 'photography',
      plan: 'free',
      deadline_seconds: 1,
    });
    const byPlan = await postJson(base, '/v1/tasks', {
      user_id: 'shopper',
      type: 'photography',
      plan: 'tryon',
    });
    for (const r of [explicit, byPlan]) {
      assert.equal(r.status, 202);
      const task = await waitFor('the deadline to cancel the task', async () => {
        const v = await getJson(base, `/v1/tasks/${r.body.id as string}`);
        return v.body.state === 'canceled' ? v.body : undefined;
      });
      assert.equal(task.credits_refunded, task.credits_charged);
      assert.match(task.error as string, /deadline_exceeded/);
      assert.equal(task.started_at, null);
      const calls = await t.server.ctx.db.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM jobs WHERE task_id = $1 AND (started_at IS NOT NULL OR admitted_at IS NOT NULL)`,
        [r.body.id],
      );
      assert.equal(calls.rows[0]!.n, 0, 'no job of the task was admitted');
    }
    const credits = await getJson(base, '/v1/users/shopper/credits');
    assert.equal(credits.body.balance, 1000 - 70);
  });
});
