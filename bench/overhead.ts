/**
 * Engine overhead: jobs per second through the whole path with a provider that answers at
 * once, beside graphile-worker and pg-boss running the same shape of no-op work on the same
 * PostgreSQL in the same run.
 *
 *   npm run bench -- overhead
 *   OVERHEAD_TASKS=50 npm run bench -- overhead          # a smaller run
 *   OVERHEAD_ONLY=darkroom_postgres,graphile_worker npm run bench -- overhead
 *   OVERHEAD_ONLY=unit_costs npm run bench -- overhead   # the image and file work's unit costs
 *   OVERHEAD_SIDE=512 npm run bench -- overhead          # the simulator's images 512×512, not 64×64
 *
 * The workload, the same for the three: UNITS units of work, each two jobs in sequence (the
 * second enqueued when the first ends), 16 handlers in flight.
 *   - darkroom: a task of IMAGES images on a pipeline `generate (batches of 1) → store`, with
 *     the in-process simulated provider at 0 ms latency making 64×64 PNGs (checked against the
 *     stored images); submitted over HTTP; one unit = one image = one generate job + one store
 *     job. This is darkroom's whole path: submit, admission by the scheduler under every limit,
 *     claim, provider call, image decode and thumbnail, stage hop, storing to disk, task finish.
 *   - graphile-worker 0.17 (LISTEN/NOTIFY, concurrency 16): job `first` adds job `second`
 *     through the handler's helpers; the handlers do nothing else.
 *   - pg-boss 10 (polling, its minimum interval 0.5 s; 16 workers of batch 1): job `first`
 *     sends `second`.
 * Time runs from the first submit/enqueue to the last second job's end. Needs PostgreSQL
 * (DATABASE_URL, default the local one); each contender gets a fresh database.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { run as runGraphile, makeWorkerUtils } from 'graphile-worker';
import PgBoss from 'pg-boss';
import pg from 'pg';
import pino from 'pino';
import { resolveConfig } from '../src/config/load.ts';
import { startServer } from '../src/server.ts';
import sharp from 'sharp';
import { synthesizeImage } from '../src/images/synth.ts';
import { makeThumbnail } from '../src/images/thumbnail.ts';
import { createLocalStorage, type LocalStorage } from '../src/storage/local.ts';
import type { Telemetry } from '../src/telemetry/telemetry.ts';

type Json = Record<string, unknown>;

const IN_FLIGHT = 16;
const IMAGES = 10;
/** Side of the simulator's square images, in pixels (OVERHEAD_SIDE=512: what the bench drew before). */
const SIDE = Number(process.env.OVERHEAD_SIDE ?? 64);

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function baseUrl(): string {
  return process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
}

async function freshDatabase(tag: string): Promise<{ name: string; url: string; drop: () => Promise<void> }> {
  const name = `darkroom_overhead_${tag}_${Date.now().toString(36)}`;
  const admin = new pg.Client({ connectionString: baseUrl() });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(baseUrl());
  u.pathname = `/${name}`;
  return {
    name,
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: baseUrl() });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * What the run's database executed, from pg_stat_statements when the cluster loads it (the
 * bench's database is fresh, so every entry of it is this run's): statements per job, BEGIN and
 * COMMIT apart, those run inside triggers and functions (seen with pg_stat_statements.track = all),
 * and the statements that took the most time.
 */
async function statementsOf(database: string, jobs: number, images: number): Promise<Json | undefined> {
  const admin = new pg.Client({ connectionString: baseUrl() });
  await admin.connect();
  try {
    const { rows } = await admin.query<{
      query: string;
      toplevel: boolean;
      calls: string;
      total_ms: number;
      mean_ms: number;
    }>(
      `SELECT query, toplevel, calls::text, total_exec_time::float8 AS total_ms, mean_exec_time::float8 AS mean_ms
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1)
        ORDER BY total_exec_time DESC`,
      [database],
    );
    const isTx = (q: string) => /^(BEGIN|COMMIT|ROLLBACK)\b/i.test(q.trim());
    const calls = (pick: (r: (typeof rows)[number]) => boolean) =>
      rows.filter(pick).reduce((n, r) => n + Number(r.calls), 0);
    const perJob = (n: number) => Number((n / jobs).toFixed(2));
    return {
      statements_per_job: perJob(calls((r) => r.toplevel && !isTx(r.query))),
      transactions_per_job: perJob(calls((r) => /^BEGIN\b/i.test(r.query.trim()))),
      trigger_statements_per_job: perJob(calls((r) => !r.toplevel)),
      // Execution time of the top-level statements (their triggers' included), lock waits too.
      statement_ms_per_job: Number(
        (rows.filter((r) => r.toplevel).reduce((n, r) => n + r.total_ms, 0) / jobs).toFixed(2),
      ),
      top_statements: rows
        .filter((r) => !isTx(r.query))
        .slice(0, 12)
        .map((r) => ({
          ...(r.toplevel ? {} : { nested: true }),
          query: r.query.replace(/\s+/g, ' ').slice(0, 120),
          calls: Number(r.calls),
          total_ms: Math.round(r.total_ms),
          mean_ms: Number(r.mean_ms.toFixed(2)),
        })),
      // Every statement an image's two jobs account for (the server's periodic ones included),
      // for the per-image budget in docs/benchmarks.md: calls per image and execution time.
      statements_per_image: rows
        .filter((r) => Number(r.calls) / images >= 0.05)
        .sort((a, b) => Number(b.calls) - Number(a.calls))
        .map((r) => ({
          ...(r.toplevel ? {} : { nested: true }),
          query: r.query.replace(/\s+/g, ' ').slice(0, 90),
          per_image: Number((Number(r.calls) / images).toFixed(2)),
          mean_ms: Number(r.mean_ms.toFixed(3)),
        })),
    };
  } catch (error) {
    log(
      `overhead: no pg_stat_statements (${String(error)}); CREATE EXTENSION pg_stat_statements in the database postgres`,
    );
    return undefined;
  } finally {
    await admin.end();
  }
}

function rate(jobs: number, ms: number): Json {
  return { jobs, elapsed_ms: Math.round(ms), jobs_per_second: Number(((jobs * 1000) / ms).toFixed(1)) };
}

async function darkroom(units: number, database: 'postgres' | 'pglite'): Promise<Json> {
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-overhead-'));
  const db = database === 'postgres' ? await freshDatabase('darkroom') : undefined;
  const keys = [{ id: 'k1', rpm: 10_000_000, concurrency: IN_FLIGHT }];
  const config = resolveConfig(
    {
      home,
      server: { port: 0, host: '127.0.0.1', logLevel: 'silent' },
      auth: { enabled: false },
      ...(db ? { database: { url: db.url } } : {}),
      limits: { maxRunningTasks: 10_000, perUserRunningTasks: 10_000, maxQueuedTasks: 1_000_000 },
      plans: { unit: { images: IMAGES, credits: 0, weight: 1 } },
      providers: {
        zero: {
          type: 'sim',
          sim: { latencyMs: 0, jitterMs: 0, errorRate: 0 },
          concurrency: IN_FLIGHT,
          keys,
          // The simulator reads width and height (a `size` param was ignored: it drew 512×512).
          params: { width: SIDE, height: SIDE },
        },
      },
      pipelines: {
        noop: {
          steps: [
            { name: 'generate', provider: 'zero', batchSize: 1 },
            { name: 'store', concurrency: IN_FLIGHT },
          ],
        },
      },
      worker: { concurrency: IN_FLIGHT },
    },
    {},
    'bench',
  );
  const server = await startServer(config, { log: pino({ level: 'silent' }) });
  try {
    const tasks = Math.ceil(units / IMAGES);
    const ids: string[] = [];
    const cpuBefore = process.cpuUsage();
    const passesBefore = await schedulerPasses(server);
    const started = performance.now();
    for (let i = 0; i < tasks; i++) {
      const res = await fetch(`${server.url}/v1/tasks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: `u${i % 20}`, type: 'noop', plan: 'unit', prompt: `o${i}` }),
      });
      const body = (await res.json()) as Json;
      if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${JSON.stringify(body)}`);
      ids.push(body.id as string);
    }
    for (;;) {
      const { rows } = await server.ctx.db.query<{ open: number }>(
        `SELECT count(*)::int AS open FROM tasks WHERE id = ANY($1::text[]) AND finished_at IS NULL`,
        [ids],
      );
      if (rows[0]!.open === 0) break;
      await sleep(20);
    }
    const elapsed = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);
    const passesAfter = await schedulerPasses(server);
    const { rows } = await server.ctx.db.query<{ jobs: number; ok: number; failed_tasks: number }>(
      `SELECT (SELECT count(*)::int FROM jobs WHERE task_id = ANY($1::text[])) AS jobs,
              (SELECT count(*)::int FROM jobs WHERE task_id = ANY($1::text[]) AND state = 'succeeded') AS ok,
              (SELECT count(*)::int FROM tasks WHERE id = ANY($1::text[]) AND state <> 'succeeded') AS failed_tasks`,
      [ids],
    );
    const r = rows[0]!;
    if (r.failed_tasks > 0 || r.ok !== r.jobs) throw new Error(`darkroom: ${JSON.stringify(r)}`);
    // What was stored, so that the workload is checked, not assumed.
    const stored = await server.ctx.db.query<{ width: number; height: number; bytes: number }>(
      `SELECT max(width)::int AS width, max(height)::int AS height, avg(bytes)::float8 AS bytes
         FROM images WHERE task_id = ANY($1::text[])`,
      [ids],
    );
    const image = stored.rows[0]!;
    if (image.width !== SIDE || image.height !== SIDE)
      throw new Error(`darkroom: stored ${JSON.stringify(image)}`);
    // Where a job's time goes: waiting for admission, admitted until a worker started it, running.
    const phases = await server.ctx.db.query<{ kind: string; admit: number; claim: number; run: number }>(
      `SELECT kind,
              avg(extract(epoch FROM admitted_at - created_at) * 1000)::float8 AS admit,
              avg(extract(epoch FROM started_at - admitted_at) * 1000)::float8 AS claim,
              avg(extract(epoch FROM finished_at - started_at) * 1000)::float8 AS run
         FROM jobs WHERE task_id = ANY($1::text[]) GROUP BY kind ORDER BY kind`,
      [ids],
    );
    const mean_ms = Object.fromEntries(
      phases.rows.map((p) => [
        p.kind,
        {
          created_to_admitted: Math.round(p.admit),
          admitted_to_started: Math.round(p.claim),
          running: Math.round(p.run),
        },
      ]),
    );
    // How many of the 16 slots held a job (admitted or running), on average over the run: the
    // rest of the time a slot waited for the scheduler's next pass to admit its next job.
    const slots = await server.ctx.db.query<{ held: number; running: number }>(
      `SELECT (sum(extract(epoch FROM finished_at - admitted_at)) / extract(epoch FROM max(finished_at) - min(created_at)))::float8 AS held,
              (sum(extract(epoch FROM finished_at - started_at)) / extract(epoch FROM max(finished_at) - min(created_at)))::float8 AS running
         FROM jobs WHERE task_id = ANY($1::text[])`,
      [ids],
    );
    const passes = passesAfter.count - passesBefore.count;
    const statements = db ? await statementsOf(db.name, r.jobs, tasks * IMAGES) : undefined;
    const storage = (server.ctx.storage as Partial<LocalStorage>).stats?.();
    return {
      database,
      tasks,
      images: tasks * IMAGES,
      ...rate(r.jobs, elapsed),
      image: { width: image.width, height: image.height, mean_bytes: Math.round(image.bytes) },
      mean_ms,
      slots_held: Number(slots.rows[0]!.held.toFixed(2)),
      slots_running: Number(slots.rows[0]!.running.toFixed(2)),
      scheduler_passes: {
        count: passes,
        per_job: Number((passes / r.jobs).toFixed(3)),
        mean_ms: passes > 0 ? Number((((passesAfter.sum - passesBefore.sum) / passes) * 1000).toFixed(1)) : 0,
      },
      // This process's CPU (all its threads: the event loop, libuv's and sharp's pools, the
      // forecaster) per job; PostgreSQL's is apart.
      process_cpu_ms_per_job: Number(((cpu.user + cpu.system) / 1000 / r.jobs).toFixed(2)),
      // Local storage's file-system calls per image (staging, original, thumbnail).
      ...(storage
        ? {
            storage_per_image: Object.fromEntries(
              Object.entries(storage).map(([k, v]) => [k, Number((v / (tasks * IMAGES)).toFixed(2))]),
            ),
          }
        : {}),
      ...statements,
    };
  } finally {
    await server.stop();
    await db?.drop();
    rmSync(home, { recursive: true, force: true });
  }
}

/** The scheduler's passes so far (their count and total seconds), from the process's metrics. */
async function schedulerPasses(server: {
  ctx: { telemetry?: Telemetry };
}): Promise<{ count: number; sum: number }> {
  const metric = await server.ctx.telemetry?.registry
    .getSingleMetric('darkroom_scheduler_pass_duration_seconds')
    ?.get();
  const value = (suffix: string) =>
    metric?.values.find((v) => (v as { metricName?: string }).metricName?.endsWith(suffix))?.value ?? 0;
  return { count: value('_count'), sum: value('_sum') };
}

async function graphile(units: number): Promise<Json> {
  const db = await freshDatabase('graphile');
  let done = 0;
  let allDone!: () => void;
  const finished = new Promise<void>((r) => (allDone = r));
  // Our own pool, with an error handler: the database's DROP … WITH (FORCE) ends its idle
  // connections, which graphile-worker's own pool would raise as an unhandled 'error'.
  const pgPool = new pg.Pool({ connectionString: db.url, max: IN_FLIGHT + 4 });
  pgPool.on('error', () => {});
  const runner = await runGraphile({
    pgPool,
    concurrency: IN_FLIGHT,
    noHandleSignals: true,
    pollInterval: 2000,
    logger: new (await import('graphile-worker')).Logger(() => () => {}),
    taskList: {
      first: async (_payload, helpers) => {
        await helpers.addJob('second', {});
      },
      second: async () => {
        if (++done === units) allDone();
      },
    },
  });
  const utils = await makeWorkerUtils({ pgPool });
  try {
    const started = performance.now();
    for (let i = 0; i < units; i++) await utils.addJob('first', { i });
    await finished;
    return { ...rate(units * 2, performance.now() - started), concurrency: IN_FLIGHT };
  } finally {
    await utils.release();
    await runner.stop();
    await pgPool.end();
    await db.drop();
  }
}

async function pgBoss(units: number): Promise<Json> {
  const db = await freshDatabase('pgboss');
  const boss = new PgBoss({ connectionString: db.url, max: IN_FLIGHT + 4 });
  boss.on('error', (e) => log(`pg-boss: ${String(e)}`));
  await boss.start();
  let done = 0;
  let allDone!: () => void;
  const finished = new Promise<void>((r) => (allDone = r));
  try {
    await boss.createQueue('first');
    await boss.createQueue('second');
    const options = { batchSize: 1, pollingIntervalSeconds: 0.5 };
    for (let w = 0; w < IN_FLIGHT; w++) {
      await boss.work('first', options, async () => {
        await boss.send('second', {});
      });
      await boss.work('second', options, async () => {
        if (++done === units) allDone();
      });
    }
    const started = performance.now();
    for (let i = 0; i < units; i++) await boss.send('first', { i });
    await finished;
    return {
      ...rate(units * 2, performance.now() - started),
      workers_per_queue: IN_FLIGHT,
      batch_size: 1,
      polling_interval_s: 0.5,
    };
  } finally {
    await boss.stop({ graceful: false, wait: true });
    await db.drop();
  }
}

/**
 * Unit costs of the image and file work one image takes on darkroom's path, each operation run
 * UNIT_COST_RUNS times one after another (nothing else of the bench in flight): wall time (p50
 * and mean) and this process's CPU (all threads) per operation. Multiplied by the counts per
 * image (storage_per_image, the statements), they make the budget in docs/benchmarks.md.
 */
async function unitCosts(): Promise<Json> {
  const runs = 200;
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-overhead-units-'));
  const storage = createLocalStorage({ dir: home, signingSecret: 'bench' });
  const result: Json = { runs };
  const measure = async (name: string, op: (i: number) => Promise<unknown>) => {
    for (let i = 0; i < 5; i++) await op(runs + i);
    const walls: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await op(i);
      walls.push(performance.now() - t);
    }
    const cpu = process.cpuUsage(cpu0);
    walls.sort((a, b) => a - b);
    result[name] = {
      wall_p50_ms: Number(walls[runs >> 1]!.toFixed(3)),
      wall_mean_ms: Number((walls.reduce((a, b) => a + b, 0) / runs).toFixed(3)),
      cpu_ms: Number(((cpu.user + cpu.system) / 1000 / runs).toFixed(3)),
    };
  };
  try {
    // The simulator's picture, as the bench's provider renders it (params size 64x64).
    const png = await synthesizeImage({ prompt: 'o', index: 0, seed: 1, width: SIDE, height: SIDE });
    const thumb = await makeThumbnail(png);
    result.png_bytes = png.length;
    result.thumbnail_bytes = thumb.data.length;
    await measure('sim_render_png', (i) =>
      synthesizeImage({ prompt: 'o', index: i, seed: 1, width: SIDE, height: SIDE }),
    );
    await measure('sharp_metadata', () => sharp(png).metadata());
    await measure('thumbnail', () => makeThumbnail(png));
    await measure('put_new_task_dir', (i) => storage.put(`tasks/u${i}/0000.png`, png, 'image/png'));
    await measure('put_known_dir', (i) => storage.put(`tasks/u0/${i}.png`, png, 'image/png'));
    await measure('get', (i) => storage.get(`tasks/u0/${i}.png`));
    await measure('delete', (i) => storage.delete(`tasks/u0/${i}.png`));
    // The store job's rename of a staged copy into place (its destination directory synced).
    for (let i = 0; i < runs + 5; i++) await storage.put(`work/m0/generate/${i}.png`, png, 'image/png');
    await measure('move', (i) => storage.move(`work/m0/generate/${i}.png`, `tasks/m0/${i}.png`));
    result.storage_calls = storage.stats();
    return result;
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

const CONTENDERS: Record<string, (units: number) => Promise<Json>> = {
  darkroom_postgres: (units) => darkroom(units, 'postgres'),
  darkroom_pglite: (units) => darkroom(units, 'pglite'),
  graphile_worker: graphile,
  pg_boss: pgBoss,
  unit_costs: unitCosts,
};

/** OVERHEAD_ONLY=darkroom_postgres,graphile_worker runs some of the contenders. */
export async function runOverheadBench(): Promise<Json> {
  const units = Number(process.env.OVERHEAD_TASKS ?? 200) * IMAGES;
  const only = process.env.OVERHEAD_ONLY?.split(',').filter(Boolean);
  const result: Json = { units, in_flight: IN_FLIGHT };
  for (const [name, run] of Object.entries(CONTENDERS)) {
    if (only && !only.includes(name)) continue;
    log(`overhead: ${name}, ${units} units of two jobs`);
    result[name] = await run(units);
    log(`overhead: ${name}: ${JSON.stringify(result[name])}`);
  }
  return result;
}
