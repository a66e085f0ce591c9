import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createForecaster, type Forecaster } from '../../src/scheduler/forecaster.ts';
import { Forecast, durationsFor, forecast, type ForecastState } from '../../src/sim/forecast.ts';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';

/**
 * Queue position and ETA through the API. The server runs the API role only, so nothing is
 * admitted and no leader forecasts on its own: the test runs the forecaster's passes itself
 * (the real worker thread, with no time budget unless a test sets one), and the queue a pass
 * reads is exactly what the test submitted. Nothing here depends on how fast the machine is.
 */

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

/** Reads an SSE stream's events as they come. */
async function openSse(url: string) {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  return {
    async next(): Promise<SseEvent> {
      while (!text.includes('\n\n')) {
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        text += decoder.decode(value, { stream: true });
      }
      const cut = text.indexOf('\n\n');
      const block = text.slice(0, cut);
      text = text.slice(cut + 2);
      if (!/^data: /m.test(block)) return this.next(); // a keepalive comment
      return {
        event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message',
        data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown>,
      };
    },
    close: () => controller.abort(),
  };
}

describeEachDb('queue position and ETA through the API', (kind) => {
  const t = useTestServer(
    kind,
    {
      // Two task slots: the Pro tasks queue behind the first two.
      limits: { maxRunningTasks: 2, perUserRunningTasks: 2 },
      providers: {
        main: {
          concurrency: 5,
          keys: [{ id: 'k1', rpm: 100_000, concurrency: 5 }],
          sim: { latencyMs: 4000, jitterMs: 0 },
        },
      },
      scheduler: { shortWorkPreference: 0.5 },
    },
    ['api'],
  );
  let forecaster: Forecaster;
  before(() => {
    forecaster = createForecaster(t.server.ctx, { budgetMs: Number.POSITIVE_INFINITY });
  });
  after(async () => {
    await forecaster.stop();
  });
  const pro: string[] = [];
  let free = '';

  it('a submit answers at once with first-come arithmetic, and says so', async () => {
    const base = t.server.baseUrl;
    for (let i = 0; i < 6; i++) {
      const r = await postJson(base, '/v1/tasks', { user_id: `pro-${i}`, type: 'photography', plan: 'pro' });
      assert.equal(r.status, 202);
      // First come, first served: the tasks queued before it.
      assert.equal(r.body.position, i);
      assert.equal(r.body.eta_basis, 'submit');
      assert.equal(r.body.forecast_stale, false);
      pro.push(r.body.id as string);
    }
    const r = await postJson(base, '/v1/tasks', { user_id: 'late', type: 'photography', plan: 'free' });
    assert.equal(r.status, 202);
    free = r.body.id as string;
    assert.equal(r.body.position, 6);
    assert.equal(r.body.eta_basis, 'submit');
    const start = Date.parse(r.body.predicted_start_at as string);
    const finish = Date.parse(r.body.predicted_finish_at as string);
    assert.ok(start < finish, 'a task starts before it finishes');
    // Free: beautify 4 s, one batch 4 s, one store wave 0.5 s after its start.
    assert.equal(finish - start, 8500);
    // A read before any forecast gives the submit's numbers, labelled the same way.
    const got = await getJson(base, `/v1/tasks/${free}`);
    assert.equal(got.body.eta_basis, 'submit');
    assert.equal(got.body.predicted_finish_at, r.body.predicted_finish_at);
  });

  it('after a forecast pass, reads give the simulated policy: the Free task goes first', async () => {
    const base = t.server.baseUrl;
    const pass = await forecaster.runNow();
    assert.equal(pass.outcome, 'written');
    assert.equal(pass.tasks, 7);
    const freeView = (await getJson(base, `/v1/tasks/${free}`)).body;
    assert.equal(freeView.eta_basis, 'simulated');
    assert.equal(freeView.forecast_stale, false);
    // Nothing admits here, so the forecast sees seven queued tasks and two free task slots: the
    // Free task takes one at once (short-work preference), then beautify 4 s + a batch 4 s + a
    // store 0.5 s, ±10 % per job.
    assert.equal(freeView.position, 0);
    const forecastAt = Date.parse(freeView.forecast_at as string);
    const freeFinish = Date.parse(freeView.predicted_finish_at as string) - forecastAt;
    assert.ok(
      freeFinish >= 7000 && freeFinish <= 11_000,
      `Free task finishes ${freeFinish} ms after the forecast`,
    );

    // Exactly what the planner's engine says for this queue from the same instant: no job
    // measured yet (calls take the simulator's 4 s, stores 500 ms, ±10 %; no call has started, so
    // no admission → start delay nor idle slot was measured: dispatch 0), no worker yet (one
    // worker's slots), three seeds averaged.
    const config = t.server.config;
    const { rows } = await t.server.ctx.db.query<{
      id: string;
      user_id: string;
      plan: string;
      weight: number;
      images_total: number;
      created_ms: number;
    }>(
      `SELECT id, user_id, plan, weight::float8 AS weight, images_total,
              (extract(epoch FROM created_at) * 1000)::float8 AS created_ms FROM tasks`,
    );
    const state: ForecastState = {
      nowMs: forecastAt,
      workerSlots: config.worker.concurrency,
      tasks: rows.map((r) => ({
        id: r.id,
        userId: r.user_id,
        plan: r.plan,
        type: 'photography',
        weight: r.weight,
        imagesTotal: r.images_total,
        done: 0,
        failed: 0,
        createdAtMs: r.created_ms,
        state: 'queued',
      })),
      keys: [],
      effectiveConcurrency: {},
      lastServedAtMs: {},
    };
    const durations = durationsFor(config, {}, 0);
    const f = Forecast.average([1, 2, 3].map((seed) => forecast(config, state, durations, { seed })));
    for (const id of [...pro, free]) {
      const view = (await getJson(base, `/v1/tasks/${id}`)).body;
      assert.equal(view.position, f.position(id, forecastAt), `position of ${id}`);
      const expected = f.get(id)!;
      // Stored as timestamptz (microseconds): equal to the millisecond.
      assert.ok(
        Math.abs(Date.parse(view.predicted_finish_at as string) - expected.finishAtMs) <= 1,
        `finish of ${id}`,
      );
      assert.ok(
        Math.abs(Date.parse(view.predicted_start_at as string) - expected.startAtMs!) <= 1,
        `start of ${id}`,
      );
    }
    // Lists read the same rows.
    const list = await getJson(base, '/v1/tasks?state=queued&limit=50');
    const listed = (list.body.tasks as Array<Record<string, unknown>>).find((x) => x.id === free)!;
    assert.equal(listed.position, 0);
    assert.equal(listed.predicted_finish_at, freeView.predicted_finish_at);
  });

  it('a forecast nobody has confirmed for a while is reported stale, not passed off as fresh', async () => {
    await t.server.ctx.db.query(`UPDATE forecast_state SET checked_at = now() - interval '1 minute'`);
    const view = (await getJson(t.server.baseUrl, `/v1/tasks/${free}`)).body;
    assert.equal(view.forecast_stale, true);
    assert.equal(view.eta_basis, 'simulated');
    await forecaster.runNow();
    assert.equal((await getJson(t.server.baseUrl, `/v1/tasks/${free}`)).body.forecast_stale, false);
  });

  it('a pass whose time budget runs out marks what it did not simulate as extrapolated', async () => {
    const hurried = createForecaster(t.server.ctx, { budgetMs: -1 });
    try {
      const pass = await hurried.runNow();
      assert.equal(pass.outcome, 'written');
    } finally {
      await hurried.stop();
    }
    const views = await Promise.all([...pro, free].map((id) => getJson(t.server.baseUrl, `/v1/tasks/${id}`)));
    for (const v of views) {
      assert.equal(v.body.eta_basis, 'extrapolated');
      assert.equal(v.body.forecast_stale, false);
    }
    await forecaster.runNow();
  });

  it('an unchanged queue is not read again, however long it waits, unless work is in flight', async () => {
    let clock = Date.now();
    const lazy = createForecaster(t.server.ctx, { budgetMs: Number.POSITIVE_INFINITY, now: () => clock });
    try {
      assert.equal((await lazy.runNow()).outcome, 'written');
      assert.equal((await lazy.runNow(false)).outcome, 'unchanged');
      // Nothing queued moves and nothing is in flight: an hour later the forecast still holds.
      clock += 3_600_000;
      assert.equal((await lazy.runNow(false)).outcome, 'unchanged');
      // A job in flight (no event yet): time alone moves the forecast, so it is redone.
      const { rows } = await t.server.ctx.db.query<{ id: string }>(
        `UPDATE jobs SET state = 'admitted', admitted_at = now()
          WHERE id = (SELECT id FROM jobs WHERE task_id = $1 LIMIT 1) RETURNING id`,
        [pro[0]!],
      );
      assert.equal(rows.length, 1);
      // Written an hour ago, with work in flight now: redone; then held for a minute, then redone.
      assert.equal((await lazy.runNow(false)).outcome, 'written');
      assert.equal((await lazy.runNow(false)).outcome, 'unchanged');
      clock += 61_000;
      assert.equal((await lazy.runNow(false)).outcome, 'written');
      await t.server.ctx.db.query(`UPDATE jobs SET state = 'queued', admitted_at = NULL WHERE id = $1`, [
        rows[0]!.id,
      ]);
    } finally {
      await lazy.stop();
    }
  });

  it('the event stream opens with the stored numbers and pushes a changed forecast', async () => {
    const base = t.server.baseUrl;
    const before = (await getJson(base, `/v1/tasks/${pro[5]!}`)).body;
    const stream = await openSse(`${base}/v1/tasks/${pro[5]!}/events`);
    try {
      const first = await stream.next();
      assert.equal(first.event, 'state');
      assert.equal(first.data.position, before.position);
      assert.equal(first.data.predicted_finish_at, before.predicted_finish_at);
      while ((await stream.next()).event !== 'eta'); // the rest of the opening round
      // Canceling the Free task changes the queue; the next forecast moves this task's prediction.
      await postJson(base, `/v1/tasks/${free}/cancel`, {});
      await forecaster.runNow();
      let event: SseEvent;
      do event = await stream.next();
      while (event.event !== 'eta');
      assert.notEqual(event.data.predicted_finish_at, before.predicted_finish_at);
      const after = (await getJson(base, `/v1/tasks/${pro[5]!}`)).body;
      assert.equal(event.data.predicted_finish_at, after.predicted_finish_at);
    } finally {
      stream.close();
    }
  });
});
