/**
 * darkroom's benchmarks. Prints one JSON document on stdout; progress goes to stderr.
 *
 *   npm run bench                       # all benchmarks (about 10 minutes: the quota runs need real 60 s windows)
 *   npm run bench -- fairness planner   # some of them: quota, fairness, planner, submit, load, eta
 *
 * Runs on the embedded PGlite, or on PostgreSQL when DATABASE_URL is set. The provider is
 * `darkroom fake-provider` in-process, so quota use is measured on the provider's side.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { resolveConfig } from '../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { runCallsBench } from './calls.ts';
import { runEtaBench } from './eta.ts';
import { startFakeProviderThread } from './fake-provider-thread.ts';
import { runLoadBench } from './load.ts';
import { runOverheadBench } from './overhead.ts';
import { runDashboardBench } from './dashboard.ts';
import { COMPARISON_SCENARIOS, comparePlannerWithServer } from './planner-vs-server.ts';
import { scale } from './engine.ts';

type Json = Record<string, unknown>;

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startDarkroom(raw: Json): Promise<{ server: RunningServer; cleanup: () => Promise<void> }> {
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-bench-'));
  const config = resolveConfig(
    {
      home,
      server: { port: 0, host: '127.0.0.1', logLevel: 'silent' },
      // The benchmarks measure scheduling and submits, not API keys: they call without one.
      auth: { enabled: false },
      ...(process.env.DATABASE_URL ? { database: { url: process.env.DATABASE_URL } } : {}),
      ...raw,
    },
    {},
    'bench',
  );
  const server = await startServer(config, { log: pino({ level: 'silent' }) });
  return {
    server,
    cleanup: async () => {
      await server.stop();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

async function submit(base: string, body: Json): Promise<string> {
  const res = await fetch(`${base}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Json;
  if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${JSON.stringify(json)}`);
  return json.id as string;
}

async function taskTimes(
  server: RunningServer,
  ids: string[],
): Promise<
  Array<{ id: string; state: string; created: number; started: number | null; finished: number | null }>
> {
  const { rows } = await server.ctx.db.query<{
    id: string;
    state: string;
    created_at: Date;
    started_at: Date | null;
    finished_at: Date | null;
  }>('SELECT id, state, created_at, started_at, finished_at FROM tasks WHERE id = ANY($1::text[])', [ids]);
  return rows.map((r) => ({
    id: r.id,
    state: r.state,
    created: r.created_at.getTime(),
    started: r.started_at?.getTime() ?? null,
    finished: r.finished_at?.getTime() ?? null,
  }));
}

async function waitAllEnded(server: RunningServer, ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const times = await taskTimes(server, ids);
    if (times.every((t) => t.finished !== null)) return;
    await sleep(200);
  }
  throw new Error('tasks did not finish in time');
}

// ---------------------------------------------------------------------------------------------
// Quota use: K keys × R rpm, a backlog that saturates them; provider-side requests per minute
// ÷ (K × R), and the share of requests answered 429. darkroom's policy against the source
// documents' way: a random key per call behind a fixed semaphore of 5, retrying after 429s.

const QUOTA = { keys: 3, rpm: 20, latencyMs: 400, durationMs: 180_000 }; // three 60 s windows

function quotaKeys() {
  return Array.from({ length: QUOTA.keys }, (_, i) => ({ id: `k${i + 1}`, rpm: QUOTA.rpm, concurrency: 5 }));
}

/**
 * Samples the provider's own counters while a run goes on, and reports the requests it
 * accepted in the first `durationMs` after its first acceptance: a fixed span for both
 * contenders, however their bursts fall.
 */
function meter(fake: FakeProviderHandle, name: string) {
  const samples: Array<{ at: number; accepted: number; sent: number; rejected: number }> = [];
  const read = () => {
    let sent = 0;
    let rejected = 0;
    for (const k of Object.values(fake.stats().providers[name]!.keys)) {
      sent += k.requests;
      rejected += k.rejected_429;
    }
    samples.push({ at: Date.now(), accepted: sent - rejected, sent, rejected });
  };
  const timer = setInterval(read, 50);
  return {
    /** Resolves once `durationMs` have passed since the first accepted request. */
    async until(durationMs: number): Promise<void> {
      for (;;) {
        const first = samples.find((s) => s.accepted > 0);
        if (first && Date.now() - first.at >= durationMs) return;
        await sleep(100);
      }
    },
    summary(durationMs: number): Json {
      clearInterval(timer);
      read();
      const first = samples.find((s) => s.accepted > 0)!;
      const end = [...samples].reverse().find((s) => s.at <= first.at + durationMs)!;
      const keys = fake.stats().providers[name]!.keys;
      const maxWindow = Math.max(...Object.values(keys).map((k) => k.max_requests_in_any_60s_window));
      const perMinute = end.accepted / (durationMs / 60_000);
      return {
        accepted_requests: end.accepted,
        requests_sent: end.sent,
        rejected_429: end.rejected,
        share_429: end.sent ? Number((end.rejected / end.sent).toFixed(4)) : 0,
        accepted_per_minute: Number(perMinute.toFixed(2)),
        quota_per_minute: QUOTA.keys * QUOTA.rpm,
        quota_use: Number((perMinute / (QUOTA.keys * QUOTA.rpm)).toFixed(4)),
        max_requests_in_any_60s_window_per_key: maxWindow,
      };
    },
  };
}

async function quotaDarkroom(): Promise<Json> {
  const fake = await startFakeProvider({
    providers: [{ name: 'q', keys: quotaKeys(), latencyMs: QUOTA.latencyMs, jitterMs: 50, errorRate: 0 }],
  });
  const { server, cleanup } = await startDarkroom({
    limits: { maxRunningTasks: 100, perUserRunningTasks: 100, maxQueuedTasks: 100_000 },
    plans: { bulk: { images: 40, credits: 0, weight: 1 } },
    providers: {
      q: { type: 'sim', concurrency: 15, keys: quotaKeys(), baseUrl: fake.url, timeoutMs: 30_000 },
    },
    pipelines: {
      gen: {
        steps: [
          { name: 'generate', provider: 'q', batchSize: 1 },
          { name: 'store', concurrency: 10 },
        ],
      },
    },
    worker: { concurrency: 20 },
    scheduler: { pollMs: 100 },
  });
  try {
    const m = meter(fake, 'q');
    // 10 tasks × 40 calls: far more than the keys take in the measured span.
    for (let i = 0; i < 10; i++)
      await submit(server.url!, { user_id: `q${i}`, type: 'gen', plan: 'bulk', prompt: 'quota' });
    log(`quota/darkroom: running ${QUOTA.durationMs / 1000} s`);
    await m.until(QUOTA.durationMs);
    return m.summary(QUOTA.durationMs);
  } finally {
    await cleanup();
    await fake.close();
  }
}

async function quotaBaseline(): Promise<Json> {
  const fake = await startFakeProvider({
    providers: [{ name: 'q', keys: quotaKeys(), latencyMs: QUOTA.latencyMs, jitterMs: 50, errorRate: 0 }],
  });
  const keys = quotaKeys();
  const m = meter(fake, 'q');
  const until = Date.now() + QUOTA.durationMs + 2000;
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  log(`quota/baseline: running ${QUOTA.durationMs / 1000} s`);
  // Semaphore of 5: five loops, each one call at a time, each call on a random key.
  const lane = async () => {
    while (Date.now() < until) {
      const key = keys[Math.floor(random() * keys.length)]!;
      const res = await fetch(`${fake.url}/p/q/v1/images/generations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key.id}` },
        body: JSON.stringify({ model: 'darkroom-sim', prompt: 'quota', n: 1 }),
      });
      await res.arrayBuffer();
      if (res.status === 429) {
        const wait = Number(res.headers.get('retry-after') ?? '1') * 1000;
        await sleep(Math.min(wait, Math.max(0, until - Date.now())));
      }
    }
  };
  await Promise.all(Array.from({ length: 5 }, lane));
  const summary = m.summary(QUOTA.durationMs);
  await fake.close();
  return summary;
}

// ---------------------------------------------------------------------------------------------
// Fairness: ten pro tasks of 70 images, then one free task of 2; the free task's completion
// time ÷ its own service time alone, and the pro makespan ÷ the lower bound (work ÷ capacity).

const FAIR = { latencyMs: 300, keyConcurrency: 5 };

function fairConfig(fakeUrl: string): Json {
  return {
    limits: { maxRunningTasks: 40, perUserRunningTasks: 2 },
    plans: { free: { images: 2, credits: 0, weight: 1 }, pro: { images: 70, credits: 0, weight: 1 } },
    providers: {
      main: {
        type: 'sim',
        concurrency: FAIR.keyConcurrency,
        keys: [{ id: 'k1', rpm: 100_000, concurrency: FAIR.keyConcurrency }],
        baseUrl: fakeUrl,
        params: { size: '256x256' },
      },
    },
    // The default pipeline (beautify → generate in batches of 5 → store, concurrency 5) and the
    // default fallback poll: admission must be driven by events, not by polling.
    worker: { concurrency: 32 },
  };
}

async function fairness(): Promise<Json> {
  const fake = await startFakeProviderThread({
    providers: [
      {
        name: 'main',
        keys: [{ id: 'k1', rpm: 100_000, concurrency: FAIR.keyConcurrency }],
        latencyMs: FAIR.latencyMs,
        jitterMs: 0,
        errorRate: 0,
      },
    ],
  });
  try {
    // The free task alone: its own service time.
    let alone: number;
    {
      const { server, cleanup } = await startDarkroom(fairConfig(fake.url));
      const id = await submit(server.url!, {
        user_id: 'solo',
        type: 'photography',
        plan: 'free',
        prompt: 'f',
      });
      await waitAllEnded(server, [id], 60_000);
      const [t] = await taskTimes(server, [id]);
      alone = t!.finished! - t!.created;
      await cleanup();
    }
    log('fairness: ten pro tasks, then a free one');
    const { server, cleanup } = await startDarkroom(fairConfig(fake.url));
    try {
      const pro: string[] = [];
      for (let i = 0; i < 10; i++)
        pro.push(
          await submit(server.url!, {
            user_id: `pro${i}`,
            type: 'photography',
            plan: 'pro',
            prompt: `p${i}`,
          }),
        );
      await sleep(FAIR.latencyMs * 2);
      const free = await submit(server.url!, {
        user_id: 'late-free',
        type: 'photography',
        plan: 'free',
        prompt: 'f',
      });
      await waitAllEnded(server, [...pro, free], 300_000);
      const times = await taskTimes(server, [...pro, free]);
      const freeT = times.find((t) => t.id === free)!;
      const proTimes = times.filter((t) => t.id !== free);
      const makespan =
        Math.max(...proTimes.map((t) => t.finished!)) - Math.min(...proTimes.map((t) => t.created));
      // Work ÷ capacity: every provider call of the run (the pro tasks' and the free task's)
      // at the provider's latency, spread over the key's concurrency; storing overlaps calling.
      // Also at the calls' measured duration (latency plus transfer and decoding, and the outcome's
      // recording), and at their time on the provider (start to answer: what holds its slot).
      const { rows } = await server.ctx.db.query<{ n: number; ms: number; answer_ms: number }>(
        `SELECT count(*)::int AS n, avg(extract(epoch FROM finished_at - started_at) * 1000)::float8 AS ms,
                avg(extract(epoch FROM COALESCE(provider_done_at, finished_at) - started_at) * 1000)::float8 AS answer_ms
           FROM jobs WHERE kind <> 'store' AND state = 'succeeded' AND task_id = ANY($1::text[])`,
        [[...pro, free]],
      );
      const calls = rows[0]!.n;
      // Where capacity went idle: after each call ended, how long until the next call started
      // (the admission hop: outcome, NOTIFY, scheduler pass, claim), while calls were waiting.
      // Also from each call's answer (where its provider slot frees) to the next start.
      const hops = await server.ctx.db.query<{
        p50: number;
        p90: number;
        answer_p50: number;
        answer_p90: number;
        started_to_call: number;
      }>(
        `WITH calls AS (
           SELECT started_at, finished_at, COALESCE(provider_done_at, finished_at) AS answered_at, admitted_at FROM jobs
            WHERE kind <> 'store' AND state = 'succeeded' AND task_id = ANY($1::text[])),
         gaps AS (
           SELECT extract(epoch FROM (SELECT min(c2.started_at) FROM calls c2 WHERE c2.started_at >= c.finished_at)
                  - c.finished_at) * 1000 AS ms,
                  extract(epoch FROM (SELECT min(c2.started_at) FROM calls c2 WHERE c2.started_at >= c.answered_at)
                  - c.answered_at) * 1000 AS answer_ms
             FROM calls c)
         SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 AS p50,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::float8 AS p90,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY answer_ms)::float8 AS answer_p50,
                percentile_cont(0.9) WITHIN GROUP (ORDER BY answer_ms)::float8 AS answer_p90,
                (SELECT avg(extract(epoch FROM started_at - admitted_at) * 1000) FROM calls)::float8 AS started_to_call
           FROM gaps WHERE ms IS NOT NULL`,
        [[...pro, free]],
      );
      // The store step: its jobs (one per call's batch, cut at the store concurrency), and a store
      // job's mean wait from creation (its images staged) to admission, and its mean duration.
      const stores = await server.ctx.db.query<{
        n: number;
        images: number;
        wait_ms: number;
        run_ms: number;
      }>(
        `SELECT count(*)::int AS n, sum(count)::int AS images,
                avg(extract(epoch FROM admitted_at - created_at) * 1000)::float8 AS wait_ms,
                avg(extract(epoch FROM finished_at - started_at) * 1000)::float8 AS run_ms
           FROM jobs WHERE kind = 'store' AND state = 'succeeded' AND task_id = ANY($1::text[])`,
        [[...pro, free]],
      );
      const physicalBound = (calls * FAIR.latencyMs) / FAIR.keyConcurrency;
      const measuredBound = (calls * rows[0]!.ms) / FAIR.keyConcurrency;
      return {
        free_alone_ms: alone,
        free_behind_pro_ms: freeT.finished! - freeT.created,
        free_completion_over_service_time: Number(((freeT.finished! - freeT.created) / alone).toFixed(3)),
        calls,
        pro_makespan_ms: makespan,
        physical_bound_ms: Math.round(physicalBound),
        pro_makespan_over_physical_bound: Number((makespan / physicalBound).toFixed(3)),
        mean_call_ms: Math.round(rows[0]!.ms),
        mean_call_to_answer_ms: Math.round(rows[0]!.answer_ms),
        measured_bound_ms: Math.round(measuredBound),
        pro_makespan_over_measured_bound: Number((makespan / measuredBound).toFixed(3)),
        // After a call ends, the delay until the next call starts (p50 / p90), and a call's mean
        // wait from admission to its start (the worker's claim).
        call_end_to_next_call_start_ms: {
          p50: Math.round(hops.rows[0]!.p50),
          p90: Math.round(hops.rows[0]!.p90),
        },
        call_answer_to_next_call_start_ms: {
          p50: Math.round(hops.rows[0]!.answer_p50),
          p90: Math.round(hops.rows[0]!.answer_p90),
        },
        call_admitted_to_started_ms: Math.round(hops.rows[0]!.started_to_call),
        store_jobs: stores.rows[0]!.n,
        store_images: stores.rows[0]!.images,
        store_created_to_admitted_ms: Math.round(stores.rows[0]!.wait_ms),
        store_job_ms: Math.round(stores.rows[0]!.run_ms),
      };
    } finally {
      await cleanup();
    }
  } finally {
    await fake.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Submit throughput: POST /v1/tasks as fast as 20 concurrent clients can, nothing running.

async function submitThroughput(): Promise<Json> {
  const { server, cleanup } = await startDarkroom({
    limits: { maxQueuedTasks: 1_000_000 },
    credits: { initialGrant: 1_000_000 },
  });
  try {
    const base = server.url!;
    const total = 2000;
    let next = 0;
    const latencies: number[] = [];
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 20 }, async (_, lane) => {
        while (next < total) {
          next++;
          const t0 = performance.now();
          await submit(base, { user_id: `s${lane}`, type: 'photography', plan: 'free', prompt: 'x' });
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const elapsed = (Date.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const q = (p: number) =>
      Number(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!.toFixed(1));
    return {
      tasks: latencies.length,
      submits_per_second: Number((latencies.length / elapsed).toFixed(1)),
      p50_ms: q(0.5),
      p99_ms: q(0.99),
      database: server.ctx.db.kind,
    };
  } finally {
    await cleanup();
  }
}

async function plannerVsServer(): Promise<Json> {
  const results = [];
  for (const setup of COMPARISON_SCENARIOS) {
    log(`planner vs server: ${setup.name}`);
    const result = await comparePlannerWithServer({
      ...setup,
      databaseUrl: process.env.DATABASE_URL,
      timeline: process.env.PLANNER_TIMELINE === '1',
    });
    // The target: the planner predicts the server's completion p50 and p95 within 15 %.
    const withinTarget = Math.abs(result.error_p50) <= 0.15 && Math.abs(result.error_p95) <= 0.15;
    results.push({ ...result, within_15_percent: withinTarget });
  }
  return { scenarios: results, target: 'completion p50 and p95 within 15 % of the server' };
}

const BENCHMARKS: Record<string, () => Promise<Json>> = {
  planner: plannerVsServer,
  quota: async () => ({
    darkroom: await quotaDarkroom(),
    baseline_random_key_semaphore_5: await quotaBaseline(),
    setup: QUOTA,
  }),
  fairness,
  // One provider call's cost beyond its latency, without a database (bench/calls.ts).
  calls: runCallsBench,
  scale,
  submit: submitThroughput,
  eta: () => runEtaBench(log),
  // OVERHEAD_TASKS: smaller runs (bench/overhead.ts). Needs PostgreSQL (DATABASE_URL or the local one).
  overhead: runOverheadBench,
  // Needs /usr/bin/chromium (.ci/run installs it).
  dashboard: () => runDashboardBench(log),
  // LOAD_RATE, LOAD_SECONDS, LOAD_FILL: smaller runs; LOAD_PHASES=empty or filled: one phase (bench/load.ts).
  load: () =>
    runLoadBench({
      rate: Number(process.env.LOAD_RATE ?? 500),
      seconds: Number(process.env.LOAD_SECONDS ?? 20),
      fill: Number(process.env.LOAD_FILL ?? 100_000),
      ...(process.env.LOAD_PHASES
        ? { phases: process.env.LOAD_PHASES.split(',') as Array<'empty' | 'filled'> }
        : {}),
    }),
};

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length ? wanted : Object.keys(BENCHMARKS);
const results: Json = {
  node: process.version,
  database: process.env.DATABASE_URL ? 'postgres' : 'pglite',
  started_at: new Date().toISOString(),
  // The machine's load when the run started (1, 5, 15 min): figures from a busy machine say so.
  load_average: os.loadavg().map((l) => Number(l.toFixed(2))),
  // libuv's threadpool (sharp, file writes, fsyncs); `npm run bench` sets 16 unless given one.
  uv_threadpool_size: Number(process.env.UV_THREADPOOL_SIZE ?? 4),
};
for (const name of names) {
  const run = BENCHMARKS[name];
  if (!run) {
    process.stderr.write(`unknown benchmark "${name}"; known: ${Object.keys(BENCHMARKS).join(', ')}\n`);
    process.exit(2);
  }
  log(`${name}…`);
  results[name] = await run();
}
process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
process.exit(0);
