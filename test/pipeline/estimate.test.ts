import assert from 'node:assert/strict';
import { it } from 'node:test';
import { fcfsEstimate } from '../../src/pipeline/estimate.ts';
import { Forecast, durationsFor, forecast, type ForecastState } from '../../src/sim/forecast.ts';
import { getTask } from '../../src/store/tasks.ts';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';

/**
 * Queue position and ETA through the API come from the forecast (src/sim/forecast.ts): the
 * queue simulated forward with the scheduler's decide(). The server runs the API role only, so
 * nothing is admitted and the queue the forecast sees is exactly what the test submitted.
 */

/** The first SSE event of a stream that does not end by itself. */
async function firstSseEvent(url: string): Promise<{ event: string; data: Record<string, unknown> }> {
  const controller = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  try {
    while (!text.includes('\n\n')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    controller.abort();
  }
  const block = text.split('\n\n')[0]!;
  return {
    event: /^event: (.*)$/m.exec(block)?.[1] ?? 'message',
    data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown>,
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

  it('a Free task submitted behind six Pro tasks is told it goes first, with an ETA of the simulated policy', async () => {
    const base = t.server.baseUrl;
    const pro: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await postJson(base, '/v1/tasks', { user_id: `pro-${i}`, type: 'photography', plan: 'pro' });
      assert.equal(r.status, 202);
      pro.push(r.body.id as string);
    }
    const free = await postJson(base, '/v1/tasks', { user_id: 'late', type: 'photography', plan: 'free' });
    assert.equal(free.status, 202);
    // Two Pro tasks run at once and share the 5 calls in flight: 2 × 15 calls of 4 s in about six
    // waves, ≈ 26 s. Then the Free task takes the freed task slot ahead of the four Pro tasks
    // still queued (short-work preference) and needs beautify 4 s + one batch 4 s + a store
    // 0.5 s: ≈ 34.5 s. First come, first served would have said position 6 and about 80 s
    // (90 calls ÷ 1.25 calls/s, then its own 8.5 s).
    assert.equal(free.body.position, 0);
    const submitEta = free.body.eta_seconds as number;
    assert.ok(submitEta >= 29 && submitEta <= 40, `ETA at submit ${submitEta} s`);

    // The arithmetic the server used before the forecast: first come, first served.
    const row = await getTask(t.server.ctx.db, free.body.id as string);
    const fcfs = await fcfsEstimate(t.server.ctx.db, t.server.config, row!);
    assert.equal(fcfs.position, 6);
    assert.ok(fcfs.eta_seconds! > 70, `FCFS ETA ${String(fcfs.eta_seconds)} s`);

    // Reads use the forecast too, of the queue as the database holds it when read. This server
    // admits nothing, so the Pro tasks the submit-time forecast started are all still queued: now
    // the Free task, still waiting for nothing, takes one of the two task slots at once.
    await new Promise((r) => setTimeout(r, 1100)); // past the forecast cache's age
    const got = await getJson(base, `/v1/tasks/${free.body.id as string}`);
    assert.equal(got.body.position, 0);
    assert.ok((got.body.eta_seconds as number) <= 12, `GET ${String(got.body.eta_seconds)} s`);
    const pros = await Promise.all(pro.map((id) => getJson(base, `/v1/tasks/${id}`)));

    // Exactly what the forecast says for this queue: every task queued since it was created, no
    // job measured yet (calls take the simulator's 4 s, stores 500 ms, ±10 %; half a scheduler
    // poll from admission to start), and no worker yet: one worker's slots assumed.
    const config = t.server.config;
    const { rows } = await t.server.ctx.db.query<{
      id: string;
      user_id: string;
      plan: string;
      images_total: number;
      created_ms: number;
    }>(
      `SELECT id, user_id, plan, images_total, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms FROM tasks`,
    );
    const nowMs = Date.now();
    const state: ForecastState = {
      nowMs,
      workerSlots: config.worker.concurrency,
      tasks: rows.map((r) => ({
        id: r.id,
        userId: r.user_id,
        plan: r.plan,
        type: 'photography',
        weight: 1,
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
    // Three runs with different random durations, averaged, as the server does when runs are cheap.
    const durations = durationsFor(config, {}, config.scheduler.pollMs / 2);
    const f = Forecast.average([1, 2, 3].map((seed) => forecast(config, state, durations, { seed })));
    for (const [id, body] of [
      ...pro.map((id, i) => [id, pros[i]!.body] as const),
      [free.body.id as string, got.body] as const,
    ]) {
      assert.equal(body.position, f.position(id, nowMs), `position of ${id}`);
      assert.ok(Math.abs((body.eta_seconds as number) - f.etaSeconds(id, nowMs)!) <= 2, `ETA of ${id}`);
    }

    // The event stream opens with the same numbers.
    const first = await firstSseEvent(`${base}/v1/tasks/${free.body.id as string}/events`);
    assert.equal(first.event, 'state');
    assert.equal(first.data.position, 0);
    assert.ok(Math.abs((first.data.eta_seconds as number) - (got.body.eta_seconds as number)) <= 2);
  });
});
