/**
 * The admission engine at scale: one scheduler pass with 100,000 queued tasks (the bounded
 * read against the whole-backlog read it replaced), and an idle server holding that backlog
 * (statements, rows and CPU per second while nothing changes).
 *
 *   npm run bench -- scale                                   # PGlite
 *   SCALE_USERS=2000 SCALE_IDLE=0 npm run bench -- scale     # one user count, no idle server
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench -- scale
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import pino from 'pino';
import { resolveConfig, type Config } from '../src/config/load.ts';
import { decide } from '../src/policy/admission.ts';
import { planPass } from '../src/scheduler/pass.ts';
import { buildPolicyInput, headLimits } from '../src/scheduler/policy-input.ts';
import { startServer } from '../src/server.ts';
import type { Db } from '../src/store/db.ts';
import { openDb } from '../src/store/index.ts';
import { migrate } from '../src/store/migrate.ts';
import { readCapacity, readQueueHead } from '../src/store/schedule.ts';

type Json = Record<string, unknown>;
const QUEUED = 100_000;
const WINDOW_MS = 61_000;

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

/** A fresh database: a new PostgreSQL database when DATABASE_URL is set, else PGlite in a temp home. */
async function freshDatabase(): Promise<{ config: Config; drop: () => Promise<void> }> {
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-bench-scale-'));
  let url: string | undefined;
  let dropPg = async () => {};
  if (process.env.DATABASE_URL) {
    const name = `darkroom_bench_${Date.now().toString(36)}`;
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const u = new URL(process.env.DATABASE_URL);
    u.pathname = `/${name}`;
    url = u.toString();
    dropPg = async () => {
      const c = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    };
  }
  const config = resolveConfig(
    {
      home,
      server: { port: 0, host: '127.0.0.1', logLevel: 'silent' },
      limits: { maxQueuedTasks: 1_000_000 },
      ...(url ? { database: { url } } : {}),
    },
    {},
    'bench',
  );
  return {
    config,
    drop: async () => {
      await dropPg();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** 100,000 queued photography tasks of `users` users, each with its first (beautify) job queued. */
async function fillQueue(db: Db, users: number): Promise<void> {
  await db.query(
    `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, images_total, credits_charged, created_at)
     SELECT 'bt' || g, 'bu' || (g % $2), 'photography', 'free', 1, 1, 'queued', 2, 2,
            now() - ($1 - g) * interval '1 millisecond'
       FROM generate_series(1, $1) g`,
    [QUEUED, users],
  );
  // Ready at the task's creation, as a submit writes them (one now() for both).
  await db.query(
    `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state,
                       max_attempts, run_after)
     SELECT 'bj' || substr(id, 3), id, user_id, 0, 'beautify', 'transform', 'main', 0, 2, 'queued', 3, created_at
       FROM tasks`,
  );
  await db.query(`INSERT INTO workers (id, host, pid, roles, slots) VALUES ('bench', 'h', 1, 'worker', 16)`);
  await db.exec('ANALYZE');
}

function quantiles(samples: number[]): Json {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => Number(s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(1));
  return { n: s.length, p50_ms: q(0.5), p90_ms: q(0.9), max_ms: q(1) };
}

/** The read the bounded one replaced: every queued job joined to its task, sorted per user. */
async function wholeBacklogRead(db: Db): Promise<number> {
  const { rows } = await db.query(
    `SELECT id FROM (
       SELECT j.id, row_number() OVER (PARTITION BY j.user_id ORDER BY t.state = 'running' DESC, t.created_at, j.task_id,
              (j.kind = 'store') DESC, j.step_index, j.first_index) AS rn
         FROM jobs j JOIN tasks t ON t.id = j.task_id WHERE j.state = 'queued') head
      WHERE rn <= 200 LIMIT 20000`,
  );
  return rows.length;
}

export async function schedulerPass(users: number, saturated = false): Promise<Json> {
  const { config, drop } = await freshDatabase();
  const db = await openDb(config);
  try {
    await migrate(db);
    log(`scale: filling ${QUEUED} queued tasks of ${users} users`);
    await fillQueue(db, users);
    // Saturated: every worker slot taken, as on a server whose calls are all in flight.
    if (saturated) await db.query(`UPDATE workers SET slots = 0`);
    const passes: number[] = [];
    let jobsRead = 0;
    let admitted = 0;
    let usersRead = 0;
    let rounds = 0;
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      const capacity = await readCapacity(db, { windowMs: WINDOW_MS, workerStaleMs: 3_600_000 });
      const pass = await planPass(db, config, capacity, WINDOW_MS, 0);
      passes.push(performance.now() - t0);
      jobsRead = pass.head.jobs.length;
      admitted = pass.decision.admissions.length;
      usersRead = pass.usersRead;
      rounds = pass.rounds;
    }
    // The head read of every user with queued work, as passes read before the fair-share order.
    const everyUser: number[] = [];
    let everyUserJobs = 0;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const capacity = await readCapacity(db, { windowMs: WINDOW_MS, workerStaleMs: 3_600_000 });
      const head = await readQueueHead(db, headLimits(config, capacity, WINDOW_MS, 0));
      decide(buildPolicyInput(config, { ...capacity, ...head }, WINDOW_MS, 0));
      everyUser.push(performance.now() - t0);
      everyUserJobs = head.jobs.length;
    }
    const old: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await wholeBacklogRead(db);
      old.push(performance.now() - t0);
    }
    return {
      users,
      ...(saturated ? { free_worker_slots: 0 } : {}),
      queued_tasks: QUEUED,
      pass: quantiles(passes),
      jobs_read_per_pass: jobsRead,
      users_read_in_fair_share_order: usersRead,
      queue_reads_per_pass: rounds,
      admissions_per_pass: admitted,
      every_users_head_before: { pass: quantiles(everyUser), jobs_read: everyUserJobs },
      whole_backlog_read_before: quantiles(old),
    };
  } finally {
    await db.close();
    await drop();
  }
}

/**
 * An idle server (API and scheduler, no worker: nothing can be admitted, nothing changes)
 * holding 100,000 queued tasks: CPU of the server process and, on PostgreSQL, the database's
 * own counters (transactions and rows read per second) over 20 s.
 */
async function idleServer(): Promise<Json> {
  const { config, drop } = await freshDatabase();
  const db = await openDb(config);
  await migrate(db);
  log(`idle: filling ${QUEUED} queued tasks`);
  await fillQueue(db, 20);
  await db.query(`DELETE FROM workers`);
  await db.close();
  const server = await startServer(config, { roles: ['api', 'scheduler'], log: pino({ level: 'silent' }) });
  const stats = config.database.url ? new pg.Client({ connectionString: config.database.url }) : undefined;
  await stats?.connect();
  const read = async () =>
    stats
      ? (
          await stats.query<{ x: number; rows: number }>(
            `SELECT (xact_commit + xact_rollback)::float8 AS x, (tup_returned + tup_fetched)::float8 AS rows
               FROM pg_stat_database WHERE datname = current_database()`,
          )
        ).rows[0]!
      : undefined;
  try {
    await new Promise((r) => setTimeout(r, 5000)); // warm up: the first passes and forecast
    const seconds = 20;
    const before = await read();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    const after = await read();
    return {
      queued_tasks: QUEUED,
      seconds: Number(wall.toFixed(1)),
      server_cpu_percent: Number((((cpu.user + cpu.system) / 1e6 / wall) * 100).toFixed(2)),
      ...(before && after
        ? {
            // Less the two statements of each read above (pg_stat_database counts them too).
            transactions_per_second: Number(((after.x - before.x - 1) / wall).toFixed(1)),
            rows_read_per_second: Number(((after.rows - before.rows) / wall).toFixed(0)),
          }
        : { note: 'statement counts need PostgreSQL (pg_stat_database); PGlite reports CPU only' }),
    };
  } finally {
    await stats?.end();
    await server.stop();
    await drop();
  }
}

/** SCALE_USERS: the user counts to measure (default 20,2000,10000); SCALE_IDLE=0 skips the idle server. */
export async function scale(): Promise<Json> {
  const counts = (process.env.SCALE_USERS ?? '20,2000,10000').split(',').map(Number);
  const out: Json = {};
  for (const users of counts) out[`scheduler_pass_${users}_users`] = await schedulerPass(users);
  out.scheduler_pass_2000_users_saturated = await schedulerPass(2000, true);
  if (process.env.SCALE_IDLE !== '0') out.idle_server = await idleServer();
  return out;
}
