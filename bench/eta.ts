/**
 * How good are the position and ETA a submit answers? The source documents' burst scenarios
 * (document 02: 10 Pro users at once; 20 users Free/Start/Pro 30/40/30 %), with latencies
 * scaled from 8 s to 1 s per batch, run through a real darkroom server calling the provider
 * simulator over HTTP (bench/planner-vs-server.ts sets them up). For every task the predicted
 * start and finish the submit answered are scored against the real ones, and so are those of
 * the first forecast that covered the task (the refinement an SSE client receives about a
 * second later). Beside them, what the submit's own arithmetic would have answered had it known
 * every task of the burst (`at_submit_knowing_burst`): the model's share of the error, apart from
 * the arrivals a submit cannot know.
 *
 *   npm run bench -- eta
 *
 * Errors are absolute (seconds) and relative to the task's real completion time (finish − submit).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startFakeProvider } from '../src/providers/fake-server/index.ts';
import { submitEstimate } from '../src/pipeline/estimate.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { readForecastSummary } from '../src/store/forecasts.ts';
import { freshPostgres } from './load.ts';
import { COMPARISON_SCENARIOS, configFor, type ComparisonSetup } from './planner-vs-server.ts';

type Json = Record<string, unknown>;

interface Prediction {
  startMs: number;
  finishMs: number;
  basis: string;
}

interface Scored {
  id: string;
  userId: string;
  plan: string;
  submittedMs: number;
  atSubmit: Prediction;
  refined: Prediction | undefined;
  /** When the bench first saw the refinement (epoch ms). */
  refinedAtMs?: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const round = (n: number, d = 2) => Number(n.toFixed(d));

function predictionOf(body: Json): Prediction {
  return {
    startMs: Date.parse(body.predicted_start_at as string),
    finishMs: Date.parse(body.predicted_finish_at as string),
    basis: body.eta_basis as string,
  };
}

async function submit(base: string, userId: string, plan: string): Promise<Json> {
  const res = await fetch(`${base}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    // The provider simulator answers a request without a prompt with a 400, as OpenAI does.
    body: JSON.stringify({ user_id: userId, type: 'gen', plan, prompt: `${userId} ${plan}` }),
  });
  const body = (await res.json()) as Json;
  if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function realTimes(
  server: RunningServer,
  ids: string[],
  timeoutMs: number,
): Promise<Map<string, { created: number; started: number; finished: number }>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await server.ctx.db.query<{
      id: string;
      state: string;
      error: string | null;
      created_at: Date;
      started_at: Date | null;
      finished_at: Date | null;
    }>('SELECT id, state, error, created_at, started_at, finished_at FROM tasks WHERE id = ANY($1::text[])', [
      ids,
    ]);
    // A failed task's end says nothing about the ETA of a task that does its work.
    const failed = rows.find((r) => r.finished_at !== null && r.state !== 'succeeded');
    if (failed) throw new Error(`task ${failed.id} ended ${failed.state}: ${failed.error ?? ''}`);
    if (rows.every((r) => r.finished_at !== null && r.started_at !== null))
      return new Map(
        rows.map((r) => [
          r.id,
          {
            created: r.created_at.getTime(),
            started: r.started_at!.getTime(),
            finished: r.finished_at!.getTime(),
          },
        ]),
      );
    if (Date.now() > deadline) throw new Error(`tasks did not finish in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function forecastSince(server: RunningServer, sinceMs: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await server.ctx.db.query<{ at: Date }>(
      'SELECT forecast_at AS at FROM forecast_state WHERE id = 1',
    );
    if (rows[0] && rows[0].at.getTime() > sinceMs) return;
    if (Date.now() > deadline) throw new Error(`no forecast in ${timeoutMs} ms after the warm-up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** p50/p90 of absolute errors (s) and of errors relative to the real completion time (%). */
function errors(pairs: Array<{ predicted: number; real: number; completion: number }>): Json {
  const abs = pairs.map((p) => Math.abs(p.predicted - p.real) / 1000).sort((a, b) => a - b);
  const rel = pairs.map((p) => Math.abs(p.predicted - p.real) / p.completion).sort((a, b) => a - b);
  return {
    p50_abs_s: round(quantile(abs, 0.5)),
    p90_abs_s: round(quantile(abs, 0.9)),
    p50_pct_of_completion: round(quantile(rel, 0.5) * 100, 1),
    p90_pct_of_completion: round(quantile(rel, 0.9) * 100, 1),
  };
}

async function scoreScenario(setup: ComparisonSetup): Promise<Json> {
  const fake = await startFakeProvider({
    providers: [
      {
        name: 'main',
        keys: [{ id: 'k1', rpm: 100_000, concurrency: setup.keyConcurrency }],
        latencyMs: setup.latencyMs,
        jitterMs: setup.jitterMs,
        errorRate: 0,
      },
    ],
  });
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-eta-'));
  // Its own database: a leader of someone else's run in a shared one would admit these tasks.
  const pgDb = process.env.DATABASE_URL ? await freshPostgres(process.env.DATABASE_URL) : undefined;
  const config = configFor({ ...setup, databaseUrl: pgDb?.url }, fake.url, home);
  const server = await startServer(config, {
    log: pino({ level: 'silent' }),
  });
  try {
    const base = server.url!;
    // Warm-up: connections, JIT, the first measured job durations the forecast starts from.
    const warm = await submit(base, 'warm-up', Object.keys(setup.plans)[0]!);
    const warmEnd = (await realTimes(server, [warm.id as string], 120_000)).get(warm.id as string)!.finished;
    // …and a forecast since it ended, so that a submit's estimate starts from measured durations
    // (as on a server that has been running), not the configured defaults.
    await forecastSince(server, warmEnd, 60_000);
    // The measured durations the burst's submits start from (the last forecast's summary).
    const summary = await readForecastSummary(server.ctx.db);

    const scored: Scored[] = [];
    let u = 0;
    for (const burst of setup.bursts)
      for (let i = 0; i < burst.users; i++) {
        const submittedMs = Date.now();
        const userId = `user-${u++}`;
        const body = await submit(base, userId, burst.plan);
        scored.push({
          id: body.id as string,
          userId,
          plan: burst.plan,
          submittedMs,
          atSubmit: predictionOf(body),
          refined: undefined,
        });
      }
    // The first forecast that covers each task (polled; the leader forecasts about once a second).
    const refineUntil = Date.now() + 30_000;
    while (scored.some((s) => !s.refined) && Date.now() < refineUntil) {
      for (const s of scored.filter((x) => !x.refined)) {
        const body = (await (await fetch(`${base}/v1/tasks/${s.id}`)).json()) as Json;
        if (body.eta_basis && body.eta_basis !== 'submit' && body.predicted_finish_at) {
          s.refined = predictionOf(body);
          s.refinedAtMs = Date.now();
        }
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const real = await realTimes(
      server,
      scored.map((s) => s.id),
      600_000,
    );
    const score = (pick: (s: Scored) => Prediction | undefined) => {
      const rows = scored.flatMap((s) => {
        const p = pick(s);
        const r = real.get(s.id)!;
        return p ? [{ p, r, completion: r.finished - r.created }] : [];
      });
      return {
        tasks: rows.length,
        start: errors(
          rows.map(({ p, r, completion }) => ({ predicted: p.startMs, real: r.started, completion })),
        ),
        finish: errors(
          rows.map(({ p, r, completion }) => ({ predicted: p.finishMs, real: r.finished, completion })),
        ),
      };
    };
    // What the submit's own arithmetic would have answered had it known the whole burst (every
    // other task of it present with all its work, the summary the burst began with): the part of the
    // error that is the model's, not the arrivals' the submit could not know. Replayed with the
    // server's function, at each task's real submit instant.
    const knowing = new Map(
      scored.map((s) => {
        const r = real.get(s.id)!;
        const e = submitEstimate(
          config,
          { id: s.id, userId: s.userId, type: 'gen', plan: s.plan, images: setup.plans[s.plan]!.images },
          {
            nowMs: r.created,
            queued: scored.length - 1,
            active: scored
              .filter((o) => o.id !== s.id)
              .map((o) => ({
                id: o.id,
                user_id: o.userId,
                type: 'gen',
                weight: setup.plans[o.plan]!.weight,
                // Known work, not arrivals to expect (the submit counts queued tasks no forecast
                // has seen as evidence of more to come).
                state: 'running' as const,
                remaining: setup.plans[o.plan]!.images,
              })),
            summary: summary && { ...summary, queued: 0 },
          },
        );
        return [s.id, { startMs: e.startAtMs, finishMs: e.finishAtMs, basis: 'submit' }];
      }),
    );
    const completions = [...real.values()].map((r) => (r.finished - r.created) / 1000).sort((a, b) => a - b);
    // Per task, seconds from the burst's first submit: what was predicted, when, and what happened.
    const t0 = scored[0]!.submittedMs;
    const sec = (ms: number | undefined) =>
      ms === undefined || Number.isNaN(ms) ? null : round((ms - t0) / 1000);
    const detail = scored.map((s) => {
      const r = real.get(s.id)!;
      return {
        plan: s.plan,
        submitted: sec(s.submittedMs),
        submit_start: sec(s.atSubmit.startMs),
        submit_finish: sec(s.atSubmit.finishMs),
        knowing_finish: sec(knowing.get(s.id)?.finishMs),
        forecast_seen: sec(s.refinedAtMs),
        forecast_start: sec(s.refined?.startMs),
        forecast_finish: sec(s.refined?.finishMs),
        real_start: sec(r.started),
        real_finish: sec(r.finished),
      };
    });
    return {
      name: setup.name,
      tasks: scored.length,
      real_completion_s: { p50: round(quantile(completions, 0.5)), max: round(completions.at(-1) ?? 0) },
      summary_service_ms: summary?.service_ms,
      at_submit: score((s) => s.atSubmit),
      at_submit_knowing_burst: score((s) => knowing.get(s.id)),
      first_forecast: {
        ...score((s) => s.refined),
        basis: [...new Set(scored.map((s) => s.refined?.basis ?? 'none'))],
      },
      detail,
    };
  } finally {
    await server.stop();
    await fake.close();
    await pgDb?.drop();
    rmSync(home, { recursive: true, force: true });
  }
}

export async function runEtaBench(log: (m: string) => void): Promise<Json> {
  const scenarios = [];
  for (const setup of COMPARISON_SCENARIOS) {
    log(`eta: ${setup.name}`);
    scenarios.push(await scoreScenario(setup));
  }
  return { scenarios };
}
