/**
 * Does the planner predict the real server? One scenario (bursts of users) runs twice:
 * through `darkroom plan`'s simulator, and through a real darkroom server calling the
 * provider simulator over HTTP, with latencies scaled down from the source documents' 8 s.
 *
 * The planner is given what an operator measures: the mean duration of each kind of job, the
 * time from a call's answer to the next call's start and to its own recorded outcome, and the
 * tasks' submit times, as this machine produced them during the run (a provider
 * call here is the simulator's latency plus image transfer and decoding; storing an image
 * is real thumbnailing and disk writes). From those alone it must predict what the
 * scheduling makes of them: the completion-time distribution of the whole burst. The ETAs
 * the server gave at submit are scored against the real completion times too.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { resolveConfig, type Config } from '../src/config/load.ts';
import { startFakeProvider } from '../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { simulate } from '../src/sim/engine.ts';
import { parseScenario } from '../src/sim/scenario.ts';

export interface Burst {
  users: number;
  plan: string;
}

export interface ComparisonSetup {
  name: string;
  bursts: Burst[];
  plans: Record<string, { images: number; credits: number; weight: number }>;
  latencyMs: number;
  jitterMs: number;
  keyConcurrency: number;
  batchSize: number;
  perUserRunningTasks: number;
  databaseUrl?: string | undefined;
  /** Also return every job's timeline on both sides (PLANNER_TIMELINE=1). */
  timeline?: boolean | undefined;
}

/** One job's times in seconds from the first submit; `user` is the submission order of its task. */
export interface JobTimes {
  user: number;
  kind: string;
  first: number;
  admitted_s: number | null;
  started_s: number | null;
  /** The provider's answer (a call) or the end (a store job). */
  answered_s: number | null;
  finished_s: number | null;
}

export interface Quantiles {
  p50_s: number;
  p95_s: number;
}

export interface ComparisonResult {
  name: string;
  tasks: number;
  calibration: { generate_ms: number; store_ms: number; dispatch_ms: number; record_ms: number };
  planner: Quantiles;
  server: Quantiles;
  /** Each task's completion in seconds from the burst, sorted. */
  completions_s: { planner: number[]; server: number[] };
  planner_p50_seeds_1_to_20: { min_s: number; median_s: number; max_s: number };
  /** server ÷ planner − 1 */
  error_p50: number;
  error_p95: number;
  eta_at_submit: { median_abs_error_s: number; p90_abs_error_s: number; median_abs_error_pct: number };
  timeline?: { planner: JobTimes[]; server: JobTimes[] };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

const round = (n: number, d = 3) => Number(n.toFixed(d));

export function configFor(setup: ComparisonSetup, fakeUrl: string, home: string): Config {
  return resolveConfig(
    {
      home,
      server: { port: 0, host: '127.0.0.1', logLevel: 'silent' },
      auth: { enabled: false }, // the comparison submits without an API key
      ...(setup.databaseUrl ? { database: { url: setup.databaseUrl } } : {}),
      limits: { maxRunningTasks: 40, perUserRunningTasks: setup.perUserRunningTasks, maxQueuedTasks: 10_000 },
      plans: setup.plans,
      providers: {
        main: {
          type: 'sim',
          concurrency: setup.keyConcurrency,
          keys: [{ id: 'k1', rpm: 100_000, concurrency: setup.keyConcurrency }],
          baseUrl: fakeUrl,
          params: { size: '256x256' },
        },
      },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'main', batchSize: setup.batchSize },
            { name: 'store', concurrency: 10 },
          ],
        },
      },
      worker: { concurrency: 32 },
      scheduler: { pollMs: 100 },
    },
    {},
    setup.name,
  );
}

async function submit(base: string, userId: string, plan: string): Promise<{ id: string; eta: number }> {
  const res = await fetch(`${base}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user_id: userId, type: 'gen', plan, prompt: `${userId} ${plan}` }),
  });
  const body = (await res.json()) as { id: string; eta_seconds: number };
  if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${JSON.stringify(body)}`);
  return { id: body.id, eta: body.eta_seconds };
}

async function waitEnded(
  server: RunningServer,
  ids: string[],
  timeoutMs: number,
): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await server.ctx.db.query<{ id: string; ms: number | null }>(
      `SELECT id, (extract(epoch FROM finished_at - created_at) * 1000)::float8 AS ms FROM tasks WHERE id = ANY($1::text[])`,
      [ids],
    );
    if (rows.every((r) => r.ms !== null)) return new Map(rows.map((r) => [r.id, r.ms!]));
    if (Date.now() > deadline) throw new Error(`${setup_name(ids)}: tasks did not finish in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function setup_name(ids: string[]): string {
  return `${ids.length} tasks`;
}

async function meanMs(server: RunningServer, sql: string): Promise<number> {
  const { rows } = await server.ctx.db.query<{ ms: number | null }>(sql);
  return rows[0]?.ms ?? 0;
}

/** Every job of these tasks, seconds from the first task's creation (the burst). */
async function serverTimeline(server: RunningServer, ids: string[]): Promise<JobTimes[]> {
  const since = (col: string) => `round((extract(epoch FROM ${col} - b.t0))::numeric, 3)::float8`;
  const { rows } = await server.ctx.db.query<JobTimes & { task_id: string }>(
    `WITH b AS (SELECT min(created_at) AS t0 FROM tasks WHERE id = ANY($1::text[]))
     SELECT j.task_id, j.kind, j.first_index AS first, ${since('j.admitted_at')} AS admitted_s,
            ${since('j.started_at')} AS started_s,
            ${since("CASE WHEN j.kind = 'store' THEN j.finished_at ELSE COALESCE(j.provider_done_at, j.finished_at) END")} AS answered_s,
            ${since('j.finished_at')} AS finished_s
       FROM jobs j, b WHERE j.task_id = ANY($1::text[]) ORDER BY j.admitted_at, j.id`,
    [ids],
  );
  return rows.map(({ task_id, ...r }) => ({ ...r, user: ids.indexOf(task_id) }));
}

export async function comparePlannerWithServer(setup: ComparisonSetup): Promise<ComparisonResult> {
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
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-compare-'));
  const config = configFor(setup, fake.url, home);
  const server = await startServer(config, { log: pino({ level: 'silent' }) });
  try {
    const base = server.url!;
    // Warm-up (connections, JIT, the first sharp calls), kept out of the measurements.
    const warm = await submit(base, 'warm-up', Object.keys(setup.plans)[0]!);
    await waitEnded(server, [warm.id], 120_000);

    // The real run: every burst at t = 0, one task per user.
    const submitted: Array<{ id: string; eta: number }> = [];
    let u = 0;
    for (const burst of setup.bursts) {
      for (let i = 0; i < burst.users; i++) submitted.push(await submit(base, `user-${u++}`, burst.plan));
    }
    const done = await waitEnded(
      server,
      submitted.map((s) => s.id),
      600_000,
    );
    const serverS = [...done.values()].map((ms) => ms / 1000).sort((a, b) => a - b);
    const ids = submitted.map((s) => s.id);
    // A call's time on the provider ends with its answer (the planner's call phase, as the
    // server's provider slot); a store job's with its outcome.
    const jobsMean = (kind: string) =>
      meanMs(
        server,
        `SELECT avg(extract(epoch FROM COALESCE(provider_done_at, finished_at) - started_at) * 1000)::float8 AS ms FROM jobs
          WHERE kind = '${kind}' AND state = 'succeeded' AND task_id IN (${ids.map((id) => `'${id}'`).join(',')})`,
      );
    const calibration = {
      generate_ms: await jobsMean('generate'),
      store_ms: await jobsMean('store'),
      // A call's answer to its recorded outcome (its images staged, the outcome's transaction): the
      // call's user keeps it in flight meanwhile, and its store job exists only after it.
      record_ms: await meanMs(
        server,
        `SELECT avg(extract(epoch FROM finished_at - provider_done_at) * 1000)::float8 AS ms FROM jobs
          WHERE kind <> 'store' AND state = 'succeeded' AND provider_done_at IS NOT NULL
            AND task_id IN (${ids.map((id) => `'${id}'`).join(',')})`,
      ),
      // The planner frees a call's slot at its answer and starts the next call `dispatchMs` after
      // admitting it there: the server's equivalent is the median time from a call's answer to the
      // next call's start (the NOTIFY, the scheduler's pass and the claim; the median leaves out
      // the burst's tail, where no call waits).
      dispatch_ms: await meanMs(
        server,
        `WITH calls AS (
           SELECT started_at, COALESCE(provider_done_at, finished_at) AS answered_at FROM jobs
            WHERE kind <> 'store' AND state = 'succeeded' AND task_id IN (${ids.map((id) => `'${id}'`).join(',')}))
         SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM
                  (SELECT min(n.started_at) FROM calls n WHERE n.started_at >= c.answered_at) - c.answered_at) * 1000)::float8 AS ms
           FROM calls c`,
      ),
    };

    const plans = setup.bursts.flatMap((b) => Array.from({ length: b.users }, () => b.plan));
    const { rows: createdRows } = await server.ctx.db.query<{ id: string; ms: number }>(
      `SELECT id, (extract(epoch FROM created_at) * 1000)::float8 AS ms FROM tasks WHERE id = ANY($1::text[])`,
      [ids],
    );
    const created = new Map(createdRows.map((r) => [r.id, r.ms]));

    // The planner, with the calibrated latencies.
    const spread = setup.jitterMs;
    const scenario = parseScenario(
      {
        name: setup.name,
        seed: 1,
        type: 'gen',
        // The tasks as the server got them: one HTTP submit after another, tens of ms apart, and
        // its first pass can start on the first task alone (it then takes every slot).
        arrivals: submitted.map((s, i) => ({
          burst: {
            users: 1,
            plan: plans[i]!,
            atSeconds: (created.get(s.id)! - created.get(ids[0]!)!) / 1000,
          },
        })),
        latency: {
          generate: {
            dist: 'uniform',
            minMs: Math.max(0, calibration.generate_ms - spread),
            maxMs: calibration.generate_ms + spread,
          },
          store: { dist: 'fixed', ms: Math.round(calibration.store_ms) },
        },
        dispatchMs: Math.round(calibration.dispatch_ms),
        recordMs: Math.round(calibration.record_ms),
        workers: 1,
      },
      setup.name,
    );
    const plannerJobs: JobTimes[] = [];
    const admittedAt = new Map<string, number>();
    const taskOrder = (taskId: string) => Number(taskId.slice(1)) - 1;
    const run = simulate(
      config,
      scenario,
      setup.timeline
        ? {
            onDecision: (input, decision) => {
              for (const a of decision.admissions) admittedAt.set(a.jobId, input.nowMs);
            },
            onJobEnd: (job, startedAtMs, atMs) =>
              plannerJobs.push({
                user: taskOrder(job.task.id),
                kind: job.kind,
                first: job.firstIndex,
                admitted_s: round(admittedAt.get(job.id)! / 1000),
                started_s: round(startedAtMs / 1000),
                answered_s: round(atMs / 1000),
                finished_s: round((atMs + (job.kind === 'store' ? 0 : scenario.recordMs)) / 1000),
              }),
          }
        : {},
    );
    const completions = (r: typeof run) =>
      r.tasks
        .filter((t) => t.finishedMs !== undefined)
        .map((t) => (t.finishedMs! - t.submittedMs) / 1000)
        .sort((a, b) => a - b);
    const plannerS = completions(run);
    // The planner's own spread: with ten tasks its p50 is one task, and the call latencies it
    // draws (seeded) move it by seconds. Seed 1 stays the prediction compared.
    const seedP50s = Array.from({ length: 20 }, (_, i) =>
      quantile(completions(simulate(config, { ...scenario, seed: i + 1 })), 0.5),
    ).sort((a, b) => a - b);

    const etaErrors = submitted.map((s) => Math.abs(s.eta - done.get(s.id)! / 1000)).sort((a, b) => a - b);
    const etaPct = submitted
      .map((s) => Math.abs(s.eta - done.get(s.id)! / 1000) / (done.get(s.id)! / 1000))
      .sort((a, b) => a - b);
    const planner = { p50_s: round(quantile(plannerS, 0.5), 2), p95_s: round(quantile(plannerS, 0.95), 2) };
    const measured = { p50_s: round(quantile(serverS, 0.5), 2), p95_s: round(quantile(serverS, 0.95), 2) };
    const timeline = setup.timeline
      ? { planner: plannerJobs, server: await serverTimeline(server, ids) }
      : undefined;
    return {
      ...(timeline ? { timeline } : {}),
      name: setup.name,
      tasks: submitted.length,
      calibration: {
        generate_ms: Math.round(calibration.generate_ms),
        store_ms: Math.round(calibration.store_ms),
        dispatch_ms: Math.round(calibration.dispatch_ms),
        record_ms: Math.round(calibration.record_ms),
      },
      planner,
      server: measured,
      // Every task's completion (seconds from the burst), sorted: with ten tasks a quantile is
      // one task, so the whole distribution shows where the two differ.
      completions_s: { planner: plannerS.map((x) => round(x, 2)), server: serverS.map((x) => round(x, 2)) },
      planner_p50_seeds_1_to_20: {
        min_s: round(seedP50s[0]!, 2),
        median_s: round(quantile(seedP50s, 0.5), 2),
        max_s: round(seedP50s.at(-1)!, 2),
      },
      error_p50: round(measured.p50_s / planner.p50_s - 1),
      error_p95: round(measured.p95_s / planner.p95_s - 1),
      eta_at_submit: {
        median_abs_error_s: round(quantile(etaErrors, 0.5), 2),
        p90_abs_error_s: round(quantile(etaErrors, 0.9), 2),
        median_abs_error_pct: round(quantile(etaPct, 0.5) * 100, 1),
      },
    };
  } finally {
    await server.stop();
    await fake.close();
    rmSync(home, { recursive: true, force: true });
  }
}

/** The two scenarios of the comparison: the source documents' shapes, latencies ÷ 8. */
export const COMPARISON_SCENARIOS: ComparisonSetup[] = [
  {
    name: '10 pro users at once (doc 02), 1 s per batch of 5',
    bursts: [{ users: 10, plan: 'pro' }],
    plans: { pro: { images: 70, credits: 0, weight: 1 } },
    latencyMs: 1000,
    jitterMs: 100,
    keyConcurrency: 5,
    batchSize: 5,
    perUserRunningTasks: 2,
  },
  {
    name: '20 users, free/start/pro 30/40/30 % at once (doc 02), 1 s per batch of 5',
    bursts: [
      { users: 6, plan: 'free' },
      { users: 8, plan: 'start' },
      { users: 6, plan: 'pro' },
    ],
    plans: {
      free: { images: 2, credits: 0, weight: 1 },
      start: { images: 30, credits: 0, weight: 1 },
      pro: { images: 70, credits: 0, weight: 1 },
    },
    latencyMs: 1000,
    jitterMs: 100,
    keyConcurrency: 5,
    batchSize: 5,
    perUserRunningTasks: 2,
  },
];
