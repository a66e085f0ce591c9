import type pg from 'pg';
import type { FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import type { PgCluster } from './pg-cluster.ts';
import type { ChaosPlan, FaultStep } from './plan.ts';
import type { Processes, Proc } from './processes.ts';
import type { CuttableProxy } from './proxy.ts';
import { PROVIDERS, TIMING } from './settings.ts';

/** A fault as it happened: when it began and ended (epoch ms), and what it hit. */
export interface FaultRecord {
  kind: FaultStep['kind'];
  label: string;
  start: number;
  end: number;
  /**
   * How long after `end` the fault may still hold progress back, from darkroom's configuration:
   * a lease to run out, a rest to pass, a provider call to time out.
   */
  recoveryMs: number;
  detail: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface FaultContext {
  plan: ChaosPlan;
  procs: Processes;
  cluster: PgCluster;
  proxy: CuttableProxy;
  fake: FakeProviderHandle;
  /** The run's own connections to the database (a pool: it reconnects after a restart). */
  db: () => Promise<pg.Pool>;
  log: (message: string) => void;
}

/**
 * Plays the plan's fault schedule. Disruptive faults run one at a time (the plan gives each its
 * own slot); worker kills and provider faults run when due. Every fault is recorded with its
 * real start and end for the auditor.
 */
export class FaultRunner {
  readonly records: FaultRecord[] = [];
  private readonly pending = new Set<Promise<void>>();

  private readonly ctx: FaultContext;
  private readonly startedAt: number;

  constructor(ctx: FaultContext, startedAt: number) {
    this.ctx = ctx;
    this.startedAt = startedAt;
  }

  async run(shouldStop: () => boolean): Promise<void> {
    for (const step of this.ctx.plan.faults) {
      const wait = this.startedAt + step.at - Date.now();
      if (wait > 0) await sleep(wait);
      if (shouldStop()) break;
      const work = this.execute(step).catch((error: unknown) =>
        this.ctx.log(`fault ${step.kind} at ${step.at} failed: ${(error as Error).stack ?? String(error)}`),
      );
      const tracked = work.finally(() => this.pending.delete(tracked));
      this.pending.add(tracked);
      // Disruptive faults end before the schedule goes on; the others overlap freely.
      if (step.kind !== 'worker_kill' && step.kind !== 'provider_faults') await tracked;
    }
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private record(r: FaultRecord): void {
    this.records.push(r);
    this.ctx.log(`fault ${r.label}: ${Math.round(r.end - r.start)} ms ${JSON.stringify(r.detail)}`);
  }

  private async execute(step: FaultStep): Promise<void> {
    switch (step.kind) {
      case 'worker_kill':
        return this.killWorker(this.startedAt + step.at);
      case 'leader_kill':
        return this.killLeader();
      case 'leader_stop':
        return this.stopLeader(step.holdMs);
      case 'pg_restart': {
        const start = Date.now();
        await this.ctx.cluster.restartImmediate(step.downMs);
        this.record({
          kind: 'pg_restart',
          label: 'pg_restart',
          start,
          end: Date.now(),
          recoveryMs: TIMING.workerLeaseMs + TIMING.leaderLeaseMs * 2,
          detail: { downMs: step.downMs },
        });
        return;
      }
      case 'partition': {
        const start = Date.now();
        const connections = this.ctx.proxy.connections;
        this.ctx.proxy.cut(step.mode);
        await sleep(step.durationMs);
        this.ctx.proxy.heal();
        this.record({
          kind: 'partition',
          label: `partition_${step.mode}`,
          start,
          end: Date.now(),
          recoveryMs: TIMING.workerLeaseMs * 2,
          detail: { mode: step.mode, durationMs: step.durationMs, connections },
        });
        return;
      }
      case 'provider_faults':
        return this.providerFaults(step);
    }
  }

  private killing: Promise<void> = Promise.resolve();
  skipped = 0;

  /** Worker kills one at a time, in schedule order. */
  private killWorker(dueAt: number): Promise<void> {
    this.killing = this.killing.then(() => this.killOneWorker(dueAt));
    return this.killing;
  }

  /**
   * SIGKILL a worker that is up (registered, heartbeating): drawn by the seed among those that
   * hold running jobs, else among the idle ones, and only while another worker is up too. A
   * replacement is started at once but takes tens of seconds to come up on a loaded machine, and
   * killing workers still starting tests nothing. A kill that finds no such moment within 30 s of
   * its time is skipped (and counted).
   */
  private async killOneWorker(dueAt: number): Promise<void> {
    const until = dueAt + 30_000;
    let victim: Proc | undefined;
    while (!victim && Date.now() < until) {
      const { up, busy } = await this.workerPids().catch(() => ({
        up: new Set<number>(),
        busy: new Set<number>(),
      }));
      const ready = this.ctx.procs.live('worker').filter((w) => up.has(w.pid));
      const working = ready.filter((w) => busy.has(w.pid));
      const pool = working.length > 0 ? working : ready;
      if (ready.length >= 2) victim = pool[Math.floor(this.victimRandom() * pool.length)];
      if (!victim) await sleep(500);
    }
    if (!victim) {
      this.skipped += 1;
      this.ctx.log('worker_kill skipped: too few workers up for 30 s');
      return;
    }
    const start = Date.now();
    this.ctx.procs.signal(victim, 'SIGKILL');
    await victim.exited;
    this.ctx.procs.spawn('worker');
    this.record({
      kind: 'worker_kill',
      label: 'worker_kill',
      start,
      end: Date.now(),
      recoveryMs: TIMING.workerLeaseMs + TIMING.heartbeatMs,
      detail: { worker: victim.name },
    });
  }

  /** Pids of the workers up (heartbeat within a lease) and of those holding running jobs. */
  private async workerPids(): Promise<{ up: Set<number>; busy: Set<number> }> {
    const db = await this.ctx.db();
    const pidOf = (id: string) => Number(id.split(':')[2]);
    const up = await db.query<{ id: string }>(
      `SELECT id FROM workers WHERE heartbeat_at > clock_timestamp() - $1::int * interval '1 millisecond'`,
      [TIMING.workerLeaseMs],
    );
    const busy = await db.query<{ worker_id: string }>(
      `SELECT DISTINCT worker_id FROM jobs WHERE state = 'running' AND lease_expires_at > clock_timestamp()`,
    );
    return {
      up: new Set(up.rows.map((r) => pidOf(r.id))),
      busy: new Set(busy.rows.map((r) => pidOf(r.worker_id))),
    };
  }

  private victimState = 0x9e3779b9;
  private victimRandom(): number {
    // xorshift32 seeded by the plan's seed: which worker dies depends on the seed only.
    if (this.victimState === 0x9e3779b9) this.victimState ^= this.ctx.plan.seed | 1;
    let x = this.victimState;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.victimState = x >>> 0;
    return this.victimState / 2 ** 32;
  }

  /** The scheduler process holding a live lease now, from the leader row's holder (`scheduler:host:pid:…`). */
  private async leader(): Promise<Proc | undefined> {
    const db = await this.ctx.db();
    const { rows } = await db.query<{ holder: string }>(
      'SELECT holder FROM scheduler_leader WHERE expires_at > clock_timestamp()',
    );
    const pid = Number(rows[0]?.holder.split(':')[2]);
    const proc = this.ctx.procs.byPid(pid);
    return proc?.alive && proc.role === 'scheduler' ? proc : undefined;
  }

  private async waitForLeader(timeoutMs: number): Promise<Proc | undefined> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      const leader = await this.leader().catch(() => undefined);
      if (leader) return leader;
      await sleep(100);
    }
    return undefined;
  }

  /**
   * Every scheduler candidate is up (it has a database session, named by its PGAPPNAME), so a
   * standby exists when the leader goes: a replacement started after the last leader fault may
   * still be booting.
   */
  private async waitForStandby(): Promise<void> {
    const until = Date.now() + 180_000;
    while (Date.now() < until) {
      const db = await this.ctx.db();
      const { rows } = await db
        .query<{ n: number }>(
          `SELECT count(DISTINCT application_name)::int AS n FROM pg_stat_activity
            WHERE application_name LIKE 'chaos-scheduler-%'`,
        )
        .catch(() => ({ rows: [{ n: 0 }] }));
      if ((rows[0]?.n ?? 0) >= this.ctx.plan.form.schedulers) return;
      await sleep(250);
    }
    throw new Error('the scheduler candidates did not all come up within 180 s');
  }

  private async killLeader(): Promise<void> {
    await this.waitForStandby();
    const leader = await this.waitForLeader(30_000);
    if (!leader) throw new Error('no live leader to kill');
    const start = Date.now();
    this.ctx.procs.signal(leader, 'SIGKILL');
    await leader.exited;
    this.record({
      kind: 'leader_kill',
      label: 'leader_kill',
      start,
      end: Date.now(),
      recoveryMs: TIMING.leaderLeaseMs * 2,
      detail: { leader: leader.name },
    });
    // A new candidate, so a standby exists for the next leader fault.
    await this.waitForLeader(60_000);
    this.ctx.procs.spawn('scheduler');
  }

  /**
   * SIGSTOP the leader while PostgreSQL shows one of its sessions inside the admission statement
   * (active on `UPDATE jobs SET state = 'admitted'`) or idle inside a transaction: the closest a
   * test can aim a pause at "inside its transaction". When no such moment comes within 30 s it
   * stops the leader anyway and says so.
   */
  private async stopLeader(holdMs: number): Promise<void> {
    await this.waitForStandby();
    const leader = await this.waitForLeader(30_000);
    if (!leader) throw new Error('no live leader to stop');
    const db = await this.ctx.db();
    const until = Date.now() + 30_000;
    let caught: { state: string; query: string } | undefined;
    while (Date.now() < until && !caught) {
      const { rows } = await db.query<{ state: string; query: string }>(
        `SELECT state, left(query, 120) AS query FROM pg_stat_activity
          WHERE application_name = $1
            AND (state = 'idle in transaction' OR (state = 'active' AND query LIKE '%SET state = ''admitted''%'))
          LIMIT 1`,
        [`chaos-${leader.name}`],
      );
      caught = rows[0];
      if (!caught) await sleep(5);
    }
    const start = Date.now();
    this.ctx.procs.signal(leader, 'SIGSTOP');
    await sleep(holdMs);
    this.ctx.procs.signal(leader, 'SIGCONT');
    this.record({
      kind: 'leader_stop',
      label: 'leader_stop',
      start,
      end: Date.now(),
      recoveryMs: TIMING.leaderLeaseMs * 2,
      detail: {
        leader: leader.name,
        holdMs,
        inside: caught ? caught.state : 'no admission statement seen in 30 s',
      },
    });
  }

  private async providerFaults(step: Extract<FaultStep, { kind: 'provider_faults' }>): Promise<void> {
    const start = Date.now();
    const res = await fetch(`${this.ctx.fake.url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: step.provider, faults: step.faults }),
    });
    if (res.status !== 200) throw new Error(`the simulator refused the faults: ${await res.text()}`);
    // Until the simulator has served them all (other batches queued later may extend this), or
    // for at most two minutes: near the end of a run there may be no more requests to serve them.
    const until = Date.now() + 120_000;
    while (
      (this.ctx.fake.stats().providers[step.provider]?.totals.faults_queued ?? 0) > 0 &&
      Date.now() < until
    )
      await sleep(100);
    const keys = PROVIDERS[step.provider].keys.length;
    const recoveryMs =
      step.label === 'storm'
        ? TIMING.retryAfterSeconds * 1000
        : step.label === 'storm_no_hint'
          ? TIMING.defaultRetryAfterMs * 2 ** Math.ceil(step.faults.length / keys)
          : step.label === 'hangs'
            ? TIMING.providerTimeoutMs
            : TIMING.backoffMaxMs;
    this.record({
      kind: 'provider_faults',
      label: step.label,
      start,
      end: Date.now(),
      recoveryMs,
      detail: { provider: step.provider, faults: step.faults.length },
    });
  }
}
