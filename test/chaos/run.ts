/**
 * darkroom's chaos run (issue 9): real PostgreSQL of its own, API, scheduler and worker processes,
 * the provider simulator over HTTP, a seeded workload and a seeded fault schedule, then an audit.
 *
 *   npm run test:chaos                    the full form, a random seed (printed)
 *   npm run test:chaos -- --seed 7        replay seed 7 (same workload and fault schedule)
 *   npm run test:chaos -- --short         the short form (.ci/run)
 *   --json FILE  write the summary there too;  --keep  keep the run's directory (logs, files)
 *
 * Prints a JSON summary; exits 1 when any invariant was violated. docs/chaos.md explains it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import YAML from 'yaml';
import { startFakeProvider } from '../../src/providers/fake-server/index.ts';
import { migrate } from '../../src/store/migrate.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { freePort } from '../helpers/process.ts';
import { audit } from './auditor.ts';
import { installAuditLog } from './audit-log.ts';
import { ChaosClient } from './client.ts';
import { FaultRunner } from './faults.ts';
import { PgCluster } from './pg-cluster.ts';
import { makePlan } from './plan.ts';
import { Processes, type ProcRole } from './processes.ts';
import { CuttableProxy } from './proxy.ts';
import { darkroomConfig, FORMS, PROVIDERS, TIMING } from './settings.ts';

const { values } = parseArgs({
  options: {
    seed: { type: 'string' },
    short: { type: 'boolean', default: false },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 1_000_000);
if (!Number.isInteger(seed) || seed < 0)
  throw new Error(`--seed must be a non-negative integer, not ${values.seed}`);
const form = FORMS[values.short ? 'short' : 'full'];
const plan = makePlan(seed, form);

const runDir = mkdtempSync(path.join(tmpdir(), `darkroom-chaos-${seed}-`));
const home = path.join(runDir, 'home');
const logDir = path.join(runDir, 'logs');
mkdirSync(home);
mkdirSync(logDir);
const t0 = Date.now();
const say = (message: string) =>
  process.stderr.write(`[chaos ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
say(
  `seed ${seed}, ${form.name} form: ${form.tasks} tasks, ${plan.faults.length} faults; run directory ${runDir}`,
);
say(`replay with: npm run test:chaos -- --seed ${seed}${values.short ? ' --short' : ''}`);

const cluster = await PgCluster.create(await freePort());
const fake = await startFakeProvider({
  providers: Object.entries(PROVIDERS).map(([name, p], i) => ({
    name,
    keys: p.keys.map((k) => ({ ...k })),
    latencyMs: TIMING.latencyMs,
    jitterMs: TIMING.jitterMs,
    errorRate: 0,
    seed: seed + i,
    retryAfterSeconds: TIMING.retryAfterSeconds,
  })),
});
const proxy = new CuttableProxy('127.0.0.1', cluster.port);
await proxy.listen();
const procs = new Processes(logDir, (role) => configFiles[role]);
let configFiles: Record<ProcRole, string>;
let exitCode = 1;

/** The run's own connections to the database: a pool, which reconnects after a restart. */
let pool: pg.Pool | undefined;
async function db(): Promise<pg.Pool> {
  if (!pool) {
    pool = new pg.Pool({ connectionString: databaseUrl, max: 4, connectionTimeoutMillis: 10_000 });
    pool.on('error', () => {});
  }
  return pool;
}

async function query<T extends pg.QueryResultRow>(sql: string): Promise<T[]> {
  for (;;) {
    try {
      return (await (await db()).query<T>(sql)).rows;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

// Interrupted: stop what the run started (processes, PostgreSQL) before leaving.
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    say(`${signal}: stopping the run's processes and PostgreSQL`);
    void procs
      .killAll()
      .catch(() => {})
      .then(() => proxy.close().catch(() => {}))
      .then(() => cluster.destroy().catch(() => {}))
      .finally(() => process.exit(130));
  });

const databaseUrl = await cluster.createDatabase('darkroom');
try {
  const setupDb = await createPostgresDb({ url: databaseUrl, poolSize: 2 });
  await migrate(setupDb);
  await setupDb.close();
  await installAuditLog(await db());

  const port = await freePort();
  const write = (name: string, url: string) => {
    const file = path.join(runDir, `${name}.yaml`);
    writeFileSync(file, YAML.stringify(darkroomConfig({ home, port, databaseUrl: url, fakeUrl: fake.url })));
    return file;
  };
  const direct = write('direct', databaseUrl);
  const proxied = write('proxied', databaseUrl.replace(`:${cluster.port}/`, `:${proxy.port}/`));
  configFiles = { api: direct, scheduler: direct, worker: proxied };

  const base = `http://127.0.0.1:${port}`;
  const api = procs.spawn('api');
  await waitUntil('the API to answer /readyz', 120_000, async () => {
    if (!api.alive) throw new Error(`the API exited; see ${logDir}/api.log`);
    return (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200;
  });
  for (let i = 0; i < form.schedulers; i++) procs.spawn('scheduler');
  for (let i = 0; i < form.workers; i++) procs.spawn('worker');
  await waitUntil('the workers and a leader', 180_000, async () => {
    const [w] = await query<{ n: number }>(`SELECT count(*)::int AS n FROM workers WHERE roles = 'worker'`);
    const l = await query('SELECT 1 FROM scheduler_leader WHERE expires_at > now()');
    return w!.n === form.workers && l.length === 1;
  });
  say(
    `${form.workers} workers, ${form.schedulers} scheduler candidates and an API are up; starting the workload`,
  );

  const startedAt = Date.now();
  const client = new ChaosClient(base, plan, path.join(runDir, 'client.jsonl'), startedAt);
  const faults = new FaultRunner({ plan, procs, cluster, proxy, fake, db, log: say }, startedAt);
  const progress = setInterval(() => {
    void query<{ state: string; n: number }>(
      `SELECT state, count(*)::int AS n FROM tasks GROUP BY state`,
    ).then((rows) => say(`tasks ${rows.map((r) => `${r.state} ${r.n}`).join(', ') || 'none yet'}`));
  }, 15_000);
  await Promise.all([client.run(() => false), faults.run(() => false)]);
  const faultsEndedAt = Date.now();
  say(`workload and faults done; waiting for every task to end`);

  // After the faults stop, everything must end: the drain may take what the queue holds at the
  // measured pace, but a stretch with no task ending for longer than the stall bound fails the run.
  let lastCount = -1;
  let lastChange = Date.now();
  const drainLimitMs = 10 * 60_000;
  for (;;) {
    const [open] = await query<{ n: number }>(
      `SELECT count(*)::int AS n FROM tasks WHERE state IN ('queued', 'running')`,
    );
    if (open!.n === 0) break;
    if (open!.n !== lastCount) {
      lastCount = open!.n;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > drainLimitMs || Date.now() - faultsEndedAt > 2 * drainLimitMs) {
      say(`${open!.n} tasks did not end; auditing as they are`);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  clearInterval(progress);
  const drainMs = Date.now() - faultsEndedAt;
  await procs.killAll();

  const result = await audit({
    db: await db(),
    plan,
    clientLog: client.log,
    faults: faults.records,
    fake: fake.stats(),
    storageDir: path.join(home, 'files'),
  });
  const count = (kind: string) => faults.records.filter((f) => f.kind === kind).length;
  const summary = {
    seed,
    form: form.name,
    tasks: result.figures.tasks,
    tasks_by_state: result.figures.byState,
    failed_tasks: result.figures.failures,
    images: result.figures.images,
    jobs: result.figures.jobs,
    provider_requests: result.figures.providerCalls,
    admissions: result.figures.admissions,
    leader_terms: result.figures.terms,
    kills: { worker: count('worker_kill'), worker_skipped: faults.skipped, leader: count('leader_kill') },
    leader_stops: faults.records
      .filter((f) => f.kind === 'leader_stop')
      .map((f) => ({ holdMs: f.detail.holdMs, inside: f.detail.inside })),
    restarts: { postgres: count('pg_restart') },
    partitions: count('partition'),
    faults: Object.fromEntries(
      [...new Set(faults.records.map((f) => f.label))].map((l) => [
        l,
        faults.records.filter((f) => f.label === l).length,
      ]),
    ),
    simulator: Object.fromEntries(Object.entries(fake.stats().providers).map(([n, p]) => [n, p.totals])),
    client: {
      requests: client.log.length,
      by_status: client.log.reduce<Record<string, number>>(
        (m, e) => ((m[e.status] = (m[e.status] ?? 0) + 1), m),
        {},
      ),
    },
    failovers_ms: result.liveness.failovers.map((f) => f.afterMs),
    failover_bound_ms: result.liveness.failoverBoundMs,
    longest_stall_ms: result.liveness.longestStallMs,
    longest_unexplained_stall_ms: result.liveness.longestUnexplainedStallMs,
    stall_bound_ms: result.liveness.stallBoundMs,
    drain_ms: drainMs,
    wall_ms: Date.now() - t0,
    violations: result.violations.length,
    violation_details: result.violations,
  };
  const text = JSON.stringify(summary, null, 2);
  process.stdout.write(`${text}\n`);
  if (values.json) writeFileSync(values.json, `${text}\n`);
  exitCode = result.violations.length === 0 ? 0 : 1;
  say(
    exitCode === 0
      ? 'no invariant violated'
      : `${result.violations.length} violations; replay with --seed ${seed}`,
  );
} catch (error) {
  say(`the run failed: ${(error as Error).stack ?? String(error)}`);
} finally {
  await procs.killAll().catch(() => {});
  await pool?.end().catch(() => {});
  await proxy.close().catch(() => {});
  await fake.close().catch(() => {});
  if (exitCode === 0 && !values.keep) {
    await cluster.destroy().catch(() => {});
    rmSync(runDir, { recursive: true, force: true });
  } else {
    // The database stays for a look: start it again with the command printed.
    await cluster.stopImmediate().catch(() => {});
    say(`kept ${runDir} (process logs in logs/, the client log in client.jsonl)`);
    say(`kept the database in ${cluster.dataDir}: ${cluster.startCommand()}`);
  }
}
process.exit(exitCode);

async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
