import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import sharp from 'sharp';
import type { FakeStats } from '../../src/providers/fake-server/index.ts';
import type { ClientEntry } from './client.ts';
import type { FaultRecord } from './faults.ts';
import type { ChaosPlan, SubmitStep } from './plan.ts';
import { INITIAL_GRANT, PLANS, PROVIDERS, TIMING } from './settings.ts';
import { livenessChecks, type Liveness } from './liveness.ts';

export interface Violation {
  invariant: string;
  detail: string;
}

export interface AuditInput {
  db: pg.Pool;
  plan: ChaosPlan;
  clientLog: ClientEntry[];
  faults: FaultRecord[];
  fake: FakeStats;
  storageDir: string;
}

export interface AuditResult {
  violations: Violation[];
  figures: {
    tasks: number;
    byState: Record<string, number>;
    images: number;
    jobs: number;
    providerCalls: number;
    admissions: number;
    terms: number;
    /** Why tasks failed or ended partial (a few), to tell faults that outlasted the retries from bugs. */
    failures: Array<{ id: string; state: string; error: string | null }>;
  };
  liveness: Liveness;
}

interface TaskRow {
  id: string;
  user_id: string;
  order_id: string | null;
  prompt: string;
  plan: string;
  state: string;
  images_total: number;
  images_done: number;
  images_failed: number;
  credits_charged: number;
  credits_refunded: number;
  attempt: number;
  created_ms: number;
  finished_ms: number | null;
}

/**
 * Checks every invariant of issue 9 against three independent records: darkroom's own tables
 * (plus the auditor's trigger logs), the client's log of what the API answered, and the
 * simulator's counters of what reached the provider.
 */
export async function audit(input: AuditInput): Promise<AuditResult> {
  const { db, plan } = input;
  const violations: Violation[] = [];
  const fail = (invariant: string, detail: string) => {
    if (violations.filter((v) => v.invariant === invariant).length < 20)
      violations.push({ invariant, detail });
    else if (violations.filter((v) => v.invariant === invariant).length === 20)
      violations.push({ invariant, detail: '… (more of the same left out)' });
  };

  const tasks = (
    await db.query<TaskRow>(
      `SELECT id, user_id, order_id, prompt, plan, state, images_total, images_done, images_failed,
              credits_charged, credits_refunded, attempt,
              (extract(epoch FROM created_at) * 1000)::float8 AS created_ms,
              (extract(epoch FROM finished_at) * 1000)::float8 AS finished_ms
         FROM tasks`,
    )
  ).rows;
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const submits = new Map<number, SubmitStep>();
  for (const step of plan.work) if (step.kind === 'submit') submits.set(step.n, step);

  checkTasksAgainstClient(tasks, byId, submits, input, fail);
  await checkCredits(db, tasks, input.clientLog, fail);
  const images = await checkImages(db, byId, input.storageDir, fail);
  const jobStats = await checkJobs(db, byId, fail);
  checkProviderLimits(input.fake, fail);
  const terms = await checkTerms(db, fail);
  const liveness = await livenessChecks(db, tasks, input.faults, fail);

  const byState: Record<string, number> = {};
  for (const t of tasks) byState[t.state] = (byState[t.state] ?? 0) + 1;
  const failures = (
    await db.query<{ id: string; state: string; error: string | null }>(
      `SELECT id, state, error FROM tasks WHERE state IN ('failed', 'partial') ORDER BY id LIMIT 10`,
    )
  ).rows;
  let providerCalls = 0;
  for (const p of Object.values(input.fake.providers))
    for (const k of Object.values(p.keys)) providerCalls += k.requests;
  return {
    violations,
    figures: {
      tasks: tasks.length,
      byState,
      images,
      jobs: jobStats.jobs,
      providerCalls,
      admissions: jobStats.admissions,
      terms,
      failures,
    },
    liveness,
  };
}

export type Fail = (invariant: string, detail: string) => void;

/** No task lost (every acknowledged submit is stored as answered) or duplicated (none unasked for). */
function checkTasksAgainstClient(
  tasks: TaskRow[],
  byId: Map<string, TaskRow>,
  submits: Map<number, SubmitStep>,
  input: AuditInput,
  fail: Fail,
): void {
  const idsByKey = new Map<string, Set<string>>();
  for (const e of input.clientLog) {
    if ((e.op !== 'submit' && e.op !== 'resubmit_order') || !e.taskId || e.status < 200 || e.status >= 300)
      continue;
    const set = idsByKey.get(e.idempotencyKey!) ?? new Set();
    set.add(e.taskId);
    idsByKey.set(e.idempotencyKey!, set);
    const t = byId.get(e.taskId);
    if (!t)
      fail('no task lost', `submit #${e.n} was answered ${e.status} with ${e.taskId}, which is not stored`);
    else if (t.user_id !== e.user || t.order_id !== e.order)
      fail(
        'no task lost',
        `${e.taskId} answered for ${e.user}/${e.order} is stored as ${t.user_id}/${t.order_id}`,
      );
  }
  for (const [key, ids] of idsByKey)
    if (ids.size > 1) fail('no task duplicated', `Idempotency-Key ${key} answered ${[...ids].join(', ')}`);

  // Every stored task is one the client asked for; per order, at most one per request sent for it.
  const requestsPerOrder = new Map<string, number>();
  for (const step of input.plan.work) {
    if (step.kind === 'submit') requestsPerOrder.set(step.order, (requestsPerOrder.get(step.order) ?? 0) + 1);
    if (step.kind === 'resubmit_order') {
      const order = submits.get(step.of)!.order;
      requestsPerOrder.set(order, (requestsPerOrder.get(order) ?? 0) + 1);
    }
  }
  const perOrder = new Map<string, TaskRow[]>();
  for (const t of tasks) {
    const n = Number(/#(\d+)$/.exec(t.prompt)?.[1]);
    const step = submits.get(n);
    if (!step || step.user !== t.user_id || step.order !== t.order_id || step.plan !== t.plan) {
      fail('no task duplicated', `${t.id} (${t.user_id}/${t.order_id}, "${t.prompt}") matches no submit`);
      continue;
    }
    const list = perOrder.get(step.order) ?? [];
    list.push(t);
    perOrder.set(step.order, list);
  }
  for (const [order, list] of perOrder) {
    if (list.length > (requestsPerOrder.get(order) ?? 0))
      fail(
        'no task duplicated',
        `order ${order}: ${list.length} tasks for ${requestsPerOrder.get(order)} requests`,
      );
    // The seed rule: an order has at most one queued or running task at a time.
    const sorted = [...list].sort((a, b) => a.created_ms - b.created_ms);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      if (prev.finished_ms === null || prev.finished_ms > sorted[i]!.created_ms)
        fail(
          'no task duplicated',
          `order ${order}: ${sorted[i]!.id} created while ${prev.id} was still active`,
        );
    }
  }
  for (const t of tasks)
    if (t.state === 'queued' || t.state === 'running')
      fail('every task terminal at the end', `${t.id} is still ${t.state}`);
}

/** One charge per attempt, at most one refund per attempt, refunds as the rule says, balances exact. */
async function checkCredits(
  db: pg.Pool,
  tasks: TaskRow[],
  clientLog: ClientEntry[],
  fail: Fail,
): Promise<void> {
  const ledger = (
    await db.query<{
      user_id: string;
      task_id: string | null;
      delta: number;
      reason: string;
      attempt: number;
      note: string | null;
    }>('SELECT user_id, task_id, delta, reason, attempt, note FROM credit_ledger')
  ).rows;
  const rowsOf = new Map<string, typeof ledger>();
  for (const r of ledger) if (r.task_id) rowsOf.set(r.task_id, [...(rowsOf.get(r.task_id) ?? []), r]);
  for (const t of tasks) {
    const rows = rowsOf.get(t.id) ?? [];
    const price = PLANS[t.plan as keyof typeof PLANS].credits;
    for (let attempt = 1; attempt <= t.attempt; attempt++) {
      const charges = rows.filter((r) => r.reason === 'charge' && r.attempt === attempt);
      const refunds = rows.filter((r) => r.reason === 'refund' && r.attempt === attempt);
      if (charges.length !== 1)
        fail('one charge per task', `${t.id} attempt ${attempt}: ${charges.length} charges`);
      if (refunds.length > 1)
        fail('at most one refund per task', `${t.id} attempt ${attempt}: ${refunds.length} refunds`);
    }
    const charged = -rows.filter((r) => r.reason === 'charge').reduce((s, r) => s + r.delta, 0);
    const refunded = rows.filter((r) => r.reason === 'refund').reduce((s, r) => s + r.delta, 0);
    if (t.attempt === 1 && charged !== price)
      fail('one charge per task', `${t.id} (${t.plan}) charged ${charged}, the plan costs ${price}`);
    if (charged !== t.credits_charged || refunded !== t.credits_refunded)
      fail(
        'balances exact',
        `${t.id}: ledger charged ${charged} refunded ${refunded}, task says ${t.credits_charged}/${t.credits_refunded}`,
      );
    if (t.state !== 'queued' && t.state !== 'running' && t.attempt === 1) {
      // The undelivered share, rounded down; everything when nothing was delivered (docs/credits).
      const expected =
        t.images_done <= 0
          ? price
          : Math.floor((price * Math.max(0, t.images_total - t.images_done)) / t.images_total);
      if (refunded !== expected)
        fail(
          'refund as the rule says',
          `${t.id} ${t.state} ${t.images_done}/${t.images_total}: refunded ${refunded}, owed ${expected}`,
        );
    }
  }
  const users = (await db.query<{ id: string; balance: number }>('SELECT id, balance FROM users')).rows;
  for (const u of users) {
    const rows = ledger.filter((r) => r.user_id === u.id);
    const sum = (reason: string) => rows.filter((r) => r.reason === reason).reduce((s, r) => s + r.delta, 0);
    const grants = rows.filter((r) => r.reason === 'grant');
    if (grants.length !== 1 || grants[0]!.delta !== INITIAL_GRANT)
      fail(
        'balances exact',
        `${u.id}: grants ${JSON.stringify(grants.map((g) => g.delta))}, expected one of ${INITIAL_GRANT}`,
      );
    const expected = sum('grant') + sum('adjust') + sum('charge') + sum('refund');
    if (expected !== u.balance)
      fail(
        'balances exact',
        `${u.id}: grants + adjustments − charges + refunds = ${expected}, balance ${u.balance}`,
      );
  }
  // Adjustments the API confirmed are in the ledger, once each; unconfirmed ones at most once.
  const notes = new Map<string, number>();
  for (const r of ledger)
    if (r.reason === 'adjust' && r.note) notes.set(r.note, (notes.get(r.note) ?? 0) + 1);
  for (const e of clientLog.filter((x) => x.op === 'adjust')) {
    const found = [...notes]
      .filter(([note]) => note.startsWith(`${e.note} (`))
      .reduce((s, [, n]) => s + n, 0);
    if (e.status === 200 && found !== 1)
      fail('balances exact', `adjustment "${e.note}" confirmed, in the ledger ${found} times`);
    if (e.status !== 200 && found > 1)
      fail('balances exact', `adjustment "${e.note}" in the ledger ${found} times`);
  }
}

/** Every image of a finished task is on disk, decodes, and matches its row; succeeded tasks have them all. */
async function checkImages(
  db: pg.Pool,
  byId: Map<string, TaskRow>,
  storageDir: string,
  fail: Fail,
): Promise<number> {
  const rows = (
    await db.query<{
      task_id: string;
      index: number;
      storage_key: string;
      thumb_key: string;
      width: number;
      height: number;
      sha256: string;
      bytes: number;
    }>('SELECT task_id, index, storage_key, thumb_key, width, height, sha256, bytes FROM images')
  ).rows;
  const count = new Map<string, number>();
  for (const r of rows) {
    count.set(r.task_id, (count.get(r.task_id) ?? 0) + 1);
    const task = byId.get(r.task_id);
    if (task && (r.index < 0 || r.index >= task.images_total))
      fail('every image on disk', `${r.task_id} has image index ${r.index} of ${task.images_total}`);
    try {
      const data = await readFile(path.join(storageDir, r.storage_key));
      const sha = createHash('sha256').update(data).digest('hex');
      if (sha !== r.sha256 || data.length !== r.bytes)
        fail(
          'every image on disk',
          `${r.storage_key}: bytes differ from the row (sha256 ${sha.slice(0, 12)})`,
        );
      const { info } = await sharp(data).raw().toBuffer({ resolveWithObject: true });
      if (info.width !== r.width || info.height !== r.height)
        fail(
          'every image on disk',
          `${r.storage_key}: decodes as ${info.width}×${info.height}, row says ${r.width}×${r.height}`,
        );
      await sharp(await readFile(path.join(storageDir, r.thumb_key)))
        .raw()
        .toBuffer();
    } catch (error) {
      fail('every image on disk', `${r.task_id}#${r.index}: ${(error as Error).message}`);
    }
  }
  for (const t of byId.values()) {
    const n = count.get(t.id) ?? 0;
    if (n !== t.images_done)
      fail('every image on disk', `${t.id} ${t.state}: images_done ${t.images_done}, ${n} images stored`);
    if (t.state === 'succeeded' && n !== t.images_total)
      fail('every image on disk', `${t.id} succeeded with ${n} of ${t.images_total} images`);
  }
  return rows.length;
}

/** Jobs all ended; none succeeded twice (work recorded twice is work duplicated). */
async function checkJobs(
  db: pg.Pool,
  byId: Map<string, TaskRow>,
  fail: Fail,
): Promise<{ jobs: number; admissions: number }> {
  const open = await db.query<{ id: string; task_id: string; state: string }>(
    `SELECT id, task_id, state FROM jobs WHERE state IN ('queued', 'admitted', 'running')`,
  );
  for (const j of open.rows)
    fail('every task terminal at the end', `job ${j.id} of ${j.task_id} is still ${j.state}`);
  const twice = await db.query<{ job_id: string; n: number }>(
    `SELECT job_id, count(*)::int AS n FROM chaos_job_log WHERE new_state = 'succeeded' GROUP BY job_id HAVING count(*) > 1`,
  );
  for (const r of twice.rows) fail('no task duplicated', `job ${r.job_id} succeeded ${r.n} times`);
  const jobs = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
  const admissions = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM chaos_job_log WHERE new_state = 'admitted'`,
  );
  void byId;
  return { jobs: jobs.rows[0]!.n, admissions: admissions.rows[0]!.n };
}

/**
 * Limits as the simulator measured them: it refuses (429) any request over a key's rpm or
 * concurrency and counts why, so a limit darkroom broke shows as a refusal by that cause; the
 * provider-wide concurrency (darkroom's AIMD cap) is measured across keys.
 */
export function checkProviderLimits(fake: FakeStats, fail: Fail): void {
  for (const [name, config] of Object.entries(PROVIDERS)) {
    const stats = fake.providers[name];
    if (!stats) {
      fail('no provider limit exceeded', `no simulator stats for ${name}`);
      continue;
    }
    if (stats.totals.rejected.rpm > 0)
      fail('no provider limit exceeded', `${name}: ${stats.totals.rejected.rpm} requests over a key's rpm`);
    if (stats.totals.rejected.concurrency > 0)
      fail(
        'no provider limit exceeded',
        `${name}: ${stats.totals.rejected.concurrency} requests over a key's concurrency`,
      );
    if (stats.totals.max_in_flight > config.concurrency)
      fail(
        'no provider limit exceeded',
        `${name}: ${stats.totals.max_in_flight} in flight, provider concurrency ${config.concurrency}`,
      );
    for (const key of config.keys) {
      const k = stats.keys[key.id];
      if (!k) continue;
      if (k.max_in_flight > key.concurrency)
        fail(
          'no provider limit exceeded',
          `${name}/${key.id}: ${k.max_in_flight} in flight > ${key.concurrency}`,
        );
      if (k.max_requests_in_any_60s_window > key.rpm)
        fail(
          'no provider limit exceeded',
          `${name}/${key.id}: ${k.max_requests_in_any_60s_window} in 60 s > ${key.rpm}`,
        );
    }
  }
}

/**
 * No admission under a stale term: each admission carries the term the leader row held when it
 * was written (the trigger reads the row the fence locked), and no later term had begun by then.
 */
async function checkTerms(db: pg.Pool, fail: Fail): Promise<number> {
  const mismatched = await db.query<{ job_id: string; admitted_term: number; leader_term: number }>(
    `SELECT job_id, admitted_term::int, leader_term::int FROM chaos_job_log
      WHERE new_state = 'admitted' AND admitted_term IS DISTINCT FROM leader_term`,
  );
  for (const r of mismatched.rows)
    fail(
      'no admission under a stale term',
      `job ${r.job_id} admitted under term ${r.admitted_term} while the row held ${r.leader_term}`,
    );
  const later = await db.query<{ job_id: string; admitted_term: number; newer: number }>(
    `SELECT a.job_id, a.admitted_term::int, min(l.term)::int AS newer
       FROM chaos_job_log a JOIN chaos_leader_log l ON l.term > a.admitted_term AND l.at < a.at
      WHERE a.new_state = 'admitted' GROUP BY a.id, a.job_id, a.admitted_term`,
  );
  for (const r of later.rows)
    fail(
      'no admission under a stale term',
      `job ${r.job_id} admitted under term ${r.admitted_term} after term ${r.newer} began`,
    );
  const terms = await db.query<{ n: number }>('SELECT count(DISTINCT term)::int AS n FROM chaos_leader_log');
  void TIMING;
  return terms.rows[0]!.n;
}
