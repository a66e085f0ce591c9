/**
 * The request path under load, with an empty queue and with 100,000 queued tasks.
 *
 *   npm run bench -- load                          # PGlite
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench -- load
 *
 * darkroom runs as `darkroom serve` in a child process, compiled as `npm start` runs it (all
 * roles: API, scheduler with its forecast thread, worker; the built-in simulated provider, 3 s
 * per call), so its peak RSS is its own (/proc/PID/status, VmHWM) and the load generator does
 * not share its event loop. Submits are sent open-loop at a fixed rate: each latency counts from
 * the instant the request was due, so a stalled server cannot hide its stall by slowing the
 * client (coordinated omission).
 *
 * Phases, each on a fresh server: (1) empty queue: submits at RATE/s, then task reads and lists
 * at READ_RATE/s; (2) the same against FILL queued tasks inserted straight into the database
 * before the server starts (a fixture: filling through the API would take minutes).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { resolveConfig } from '../src/config/load.ts';
import type { Db } from '../src/store/db.ts';
import { openDb } from '../src/store/index.ts';
import { migrate } from '../src/store/migrate.ts';
import { memoryProbe } from './memory.ts';

type Json = Record<string, unknown>;

const ADMIN_KEY = `bench-${randomBytes(16).toString('hex')}`;
const AUTH = { authorization: `Bearer ${ADMIN_KEY}` };

function log(message: string): void {
  process.stderr.write(`[bench load] ${message}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summary(latencies: number[], errors: Map<string, number>, seconds: number): Json {
  const s = [...latencies].sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  let failed = 0;
  for (const n of errors.values()) failed += n;
  return {
    requests: latencies.length,
    errors: failed,
    // What failed: "<status> <code>" for an HTTP answer, "client <name>" when no answer came.
    ...(failed > 0 ? { error_kinds: Object.fromEntries(errors) } : {}),
    achieved_per_s: r(latencies.length / seconds),
    p50_ms: r(quantile(s, 0.5)),
    p90_ms: r(quantile(s, 0.9)),
    p99_ms: r(quantile(s, 0.99)),
    max_ms: r(s[s.length - 1] ?? Number.NaN),
  };
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

interface Target {
  home: string;
  configFile: string;
  databaseUrl: string | undefined;
  cleanup(): Promise<void>;
}

/** A fresh database on the server of `adminUrl` (not shared with anyone else's run). */
export async function freshPostgres(adminUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `darkroom_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      await c.end();
    },
  };
}

/** A data directory and config file, and for PostgreSQL a fresh database. */
async function makeTarget(port: number): Promise<Target> {
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-load-'));
  const db = process.env.DATABASE_URL ? await freshPostgres(process.env.DATABASE_URL) : undefined;
  const databaseUrl = db?.url;
  // LOAD_KEEP_DB=1: the PostgreSQL database is kept after the run (its plans and statistics as
  // the run left them, for EXPLAIN); its name is logged.
  if (db && process.env.LOAD_KEEP_DB) log(`database ${new URL(db.url).pathname.slice(1)} is kept`);
  const dropDb = process.env.LOAD_KEEP_DB ? async () => {} : (db?.drop ?? (async () => {}));
  const configFile = path.join(home, 'darkroom.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      home,
      server: { host: '127.0.0.1', port, logLevel: 'warn' },
      // Auth on, as in production: every request checks its key.
      auth: { adminKey: ADMIN_KEY },
      // The bench's one key submits RATE/s for every user: above the default per-key rate
      // (6,000 a minute), which would answer 429 past the first 6,000 submits of a minute.
      limits: { maxQueuedTasks: 1_000_000, keySubmitsPerMinute: 10_000_000 },
      credits: { initialGrant: 1_000_000 },
      ...(databaseUrl ? { database: { url: databaseUrl } } : {}),
    }),
  );
  return {
    home,
    configFile,
    databaseUrl,
    async cleanup() {
      await dropDb();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Inserts `n` queued Free photography tasks with their first job, as a submit would leave them. */
async function fillQueue(target: Target, n: number): Promise<void> {
  const config = resolveConfig(
    { home: target.home, ...(target.databaseUrl ? { database: { url: target.databaseUrl } } : {}) },
    {},
    'bench',
  );
  const db: Db = await openDb(config, () => {});
  try {
    await migrate(db);
    const chunk = 5000;
    // One task a millisecond, the oldest first, as submits over time would leave them: tasks
    // inserted by one statement would share its now(), and thousands of users whose first tasks
    // tie exactly make every admission pass read all of them (the fair-share read stops only
    // past a user whose score is below every unread one's).
    const startMs = Date.now() - n - 1000;
    for (let done = 0; done < n; done += chunk) {
      const size = Math.min(chunk, n - done);
      const ids = Array.from({ length: size }, () => uuidv7());
      const users = ids.map((_, i) => `fill-${(done + i) % 5000}`);
      const jobIds = ids.map(() => uuidv7());
      await db.transaction(async (tx) => {
        await tx.query(
          `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, stage, images_total, credits_charged, created_at)
           SELECT id, user_id, 'photography', 'free', 0, 1, 'queued', 'beautify', 2, 2,
                  to_timestamp(($3::float8 + n - 1) / 1000)
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(id, user_id, n)`,
          [ids, users, startMs + done],
        );
        await tx.query(
          `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state, max_attempts, input, run_after)
           SELECT j, t, u, 0, 'beautify', 'transform', 'main', 0, 1, 'queued', 3, '{"keys":[]}', tasks.created_at
             FROM unnest($1::text[], $2::text[], $3::text[]) AS x(j, t, u) JOIN tasks ON tasks.id = x.t`,
          [jobIds, ids, users],
        );
      });
      if ((done / chunk) % 4 === 0) log(`filled ${done + size} / ${n}`);
    }
    // The fixture bypasses submit, so it sets the queued counter itself.
    await db.query(
      `UPDATE queue_depth SET queued = (SELECT count(*) FROM tasks WHERE state = 'queued') WHERE id = 1`,
    );
    await db.query('ANALYZE');
  } finally {
    await db.close();
  }
}

interface Server {
  base: string;
  child: ChildProcess;
  peakRssMb(): number;
  /** What the RSS was made of at its highest (bench/memory.ts; LOAD_MEMORY=0: undefined). */
  memoryAtPeak(): unknown;
  stop(): Promise<void>;
}

/**
 * The server runs as users run it: compiled (dist/, built here when src/ changed since the last
 * build), not through tsx, whose loader would add to its RSS in the main and forecast threads.
 */
function buildServer(): void {
  const build = spawnSync(
    process.execPath,
    [path.join(import.meta.dirname, '..', 'scripts', 'build.mjs'), '--if-stale'],
    {
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  if (build.status !== 0) throw new Error('the build (scripts/build.mjs) failed');
}

async function startServerProcess(target: Target, port: number): Promise<Server> {
  buildServer();
  const bin = path.join(import.meta.dirname, '..', 'bin', 'darkroom.cjs');
  // LOAD_PROFILE_DIR: the server writes a V8 CPU profile there when it exits (where the time goes).
  const profile = process.env.LOAD_PROFILE_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LOAD_PROFILE_DIR}`]
    : [];
  const probe = memoryProbe(target.home);
  const child = spawn(
    process.execPath,
    [...profile, ...probe.nodeArgs, bin, 'serve', '--config', target.configFile],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        ...probe.env,
        DATABASE_URL: target.databaseUrl ?? '',
        DARKROOM_FROM_SOURCE: '0',
      },
    },
  );
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`darkroom serve exited (${child.exitCode})`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (i > 600) throw new Error('darkroom serve did not become ready in 60 s');
    await sleep(100);
  }
  return {
    base,
    child,
    peakRssMb() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
      return Math.round(kb / 1024);
    },
    memoryAtPeak: probe.read,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/**
 * Sends `make(i)` at `rate` per second for `seconds`, open-loop; latency from the due instant.
 */
async function openLoop(
  rate: number,
  seconds: number,
  make: (i: number) => Promise<Response>,
  onBody?: (body: Json) => void,
): Promise<Json> {
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  const errors = new Map<string, number>();
  const fail = (kind: string) => errors.set(kind, (errors.get(kind) ?? 0) + 1);
  const started = performance.now();
  const inFlight: Array<Promise<void>> = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    inFlight.push(
      make(i)
        .then(async (res) => {
          const body = (await res.json()) as Json;
          if (res.status >= 400)
            fail(`${res.status} ${(body.error as { code?: string } | undefined)?.code ?? ''}`);
          else {
            latencies.push(performance.now() - due);
            onBody?.(body);
          }
        })
        .catch((error: unknown) => {
          const cause = (error as { cause?: { code?: string } }).cause?.code;
          fail(`client ${(error as Error).name}${cause ? ` ${cause}` : ''}`);
        }),
    );
  }
  await Promise.all(inFlight);
  return summary(latencies, errors, (performance.now() - started) / 1000);
}

const post = (base: string, body: Json) =>
  fetch(`${base}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...AUTH },
    body: JSON.stringify(body),
  });

/** Why a request got no answer: the error and its cause (undici puts the reason in `cause`). */
function reason(error: unknown): string {
  const e = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  return `${e.name ?? 'Error'}: ${e.message ?? String(error)}${e.cause ? ` (${e.cause.code ?? e.cause.message})` : ''}`;
}

/**
 * The server's scheduler passes so far (count, seconds), from its Prometheus metrics. A server
 * still working off a backlog (the embedded database runs one statement at a time) can take
 * minutes to answer, and may drop the connection meanwhile: asked again until it answers (for
 * up to 10 minutes), so a slow server gives a figure instead of ending the run.
 */
async function schedulerPasses(base: string): Promise<{ count: number; seconds: number; waitedMs: number }> {
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(`${base}/metrics`, { headers: AUTH, signal: AbortSignal.timeout(120_000) });
      const text = await res.text();
      const value = (name: string) =>
        Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
      return {
        count: value('darkroom_scheduler_pass_duration_seconds_count'),
        seconds: value('darkroom_scheduler_pass_duration_seconds_sum'),
        waitedMs: Math.round(performance.now() - started),
      };
    } catch (error) {
      if (performance.now() - started > 600_000) throw error;
      log(
        `metrics read ${attempt} failed after ${Math.round(performance.now() - started)} ms: ${reason(error)}; again`,
      );
      await sleep(1000);
    }
  }
}

async function measure(server: Server, rate: number, seconds: number, readRate: number): Promise<Json> {
  const base = server.base;
  const tag = randomBytes(3).toString('hex');
  // Warm-up (connections, JIT), not measured.
  await openLoop(50, 2, (i) =>
    post(base, { user_id: `warm-${tag}-${i}`, type: 'photography', plan: 'free' }),
  );
  const ids: string[] = [];
  log(`submits at ${rate}/s for ${seconds} s`);
  const passesBefore = await schedulerPasses(base);
  const submitStarted = performance.now();
  const submits = await openLoop(
    rate,
    seconds,
    (i) => post(base, { user_id: `u-${tag}-${i}`, type: 'photography', plan: 'free' }),
    (b) => ids.push(b.id as string),
  );
  const passesAfter = await schedulerPasses(base);
  const submitSeconds = (performance.now() - submitStarted) / 1000;
  // What competes with the API in an all-roles server: admission passes during the submits.
  const passes = {
    per_s: Math.round(((passesAfter.count - passesBefore.count) / submitSeconds) * 10) / 10,
    busy_percent: Math.round(((passesAfter.seconds - passesBefore.seconds) / submitSeconds) * 1000) / 10,
    // How long the server took to answer the metrics read after the last submit's answer.
    metrics_read_ms: passesAfter.waitedMs,
  };
  log(`task reads at ${readRate}/s`);
  const reads = await openLoop(readRate, seconds / 2, (i) =>
    fetch(`${base}/v1/tasks/${ids[(i * 7919) % ids.length]!}`, { headers: AUTH }),
  );
  log(`queued lists at ${readRate / 4}/s`);
  const lists = await openLoop(readRate / 4, seconds / 2, () =>
    fetch(`${base}/v1/tasks?state=queued&limit=50`, { headers: AUTH }),
  );
  return {
    submit: submits,
    scheduler_passes_during_submits: passes,
    task_read: reads,
    list_queued_50: lists,
    server_peak_rss_mb: server.peakRssMb(),
    ...(server.memoryAtPeak() ? { server_memory_at_peak: server.memoryAtPeak() } : {}),
  };
}

export async function runLoadBench(
  options: {
    rate?: number;
    seconds?: number;
    readRate?: number;
    fill?: number;
    phases?: ReadonlyArray<'empty' | 'filled'>;
  } = {},
): Promise<Json> {
  const rate = options.rate ?? 500;
  const seconds = options.seconds ?? 20;
  const readRate = options.readRate ?? 200;
  const fill = options.fill ?? 100_000;
  const out: Json = {
    database: process.env.DATABASE_URL ? 'postgres' : 'pglite',
    rate_per_s: rate,
    seconds,
  };
  for (const phase of options.phases ?? (['empty', 'filled'] as const)) {
    const port = await freePort();
    const target = await makeTarget(port);
    try {
      if (phase === 'filled') {
        log(`filling ${fill} queued tasks`);
        await fillQueue(target, fill);
      }
      const server = await startServerProcess(target, port);
      try {
        log(`phase ${phase}`);
        out[phase === 'empty' ? 'empty_queue' : `queued_${fill}`] = await measure(
          server,
          rate,
          seconds,
          readRate,
        );
      } finally {
        await server.stop();
      }
    } finally {
      await target.cleanup();
    }
  }
  return out;
}
