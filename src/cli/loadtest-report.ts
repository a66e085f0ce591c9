import type { Audit } from './loadtest-audit.ts';
import type { DriveResult, TaskObject } from './loadtest-driver.ts';

/** The load test's figures, from the driver's records and the tasks' server-side times. */

export interface Dist {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles (as the planner's report), in the unit given. */
export function dist(values: number[]): Dist {
  if (values.length === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const at = (p: number) => s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)]!;
  return { count: s.length, p50: at(50), p90: at(90), p99: at(99), max: s[s.length - 1]! };
}

export interface PlanFigures {
  submitted: number;
  accepted: number;
  states: Record<string, number>;
  images: { delivered: number; total: number };
  /** Seconds: submit (created_at) → first job admitted (started_at). */
  queueWait: Dist;
  /** Seconds: created_at → finished_at. */
  completion: Dist;
}

export interface LoadtestReport {
  scenario: { name: string | null; file: string; seed: number; speed: number; tasks: number; users: number };
  url: string;
  run_id: string;
  started_at: string;
  wall_seconds: number;
  submits: {
    sent: number;
    accepted: number;
    deduplicated: number;
    network_retries: number;
    in_flight_retries: number;
    /** Milliseconds: first attempt sent → final answer. */
    latency_ms: Dist;
    /** How late the driver sent a submit after its scheduled time, at most. */
    max_late_ms: number;
  };
  plans: Record<string, PlanFigures>;
  overall: PlanFigures;
  throughput: { span_seconds: number; tasks_per_min: number; images_per_min: number };
  /** Submit refusals as `<status> <code>` (or `network:<code>`) and ended tasks' errors. */
  errors: { submit: Record<string, number>; tasks: Record<string, number> };
  audit: { ok: boolean; checks: Audit['checks'] };
  timed_out: boolean;
}

const secs = (a: string, b: string | null): number | undefined =>
  b ? (Date.parse(b) - Date.parse(a)) / 1000 : undefined;

function figures(records: DriveResult['records'], final: Map<string, TaskObject>): PlanFigures {
  const tasks = records
    .map((r) => (r.taskId ? final.get(r.taskId) : undefined))
    .filter((t) => t !== undefined);
  const states: Record<string, number> = {};
  for (const t of tasks) states[t.state] = (states[t.state] ?? 0) + 1;
  const waits = tasks.map((t) => secs(t.created_at, t.started_at)).filter((v) => v !== undefined);
  const ends = tasks
    .filter((t) => t.started_at && t.finished_at)
    .map((t) => secs(t.created_at, t.finished_at)!);
  return {
    submitted: records.length,
    accepted: records.filter((r) => r.taskId).length,
    states,
    images: {
      delivered: tasks.reduce((a, t) => a + t.progress.done, 0),
      total: tasks.reduce((a, t) => a + t.progress.total, 0),
    },
    queueWait: dist(waits),
    completion: dist(ends),
  };
}

function count(into: Record<string, number>, key: string): void {
  into[key] = (into[key] ?? 0) + 1;
}

export function buildReport(
  meta: { name: string | undefined; file: string; seed: number; speed: number; url: string; runId: string },
  run: DriveResult,
  result: Audit,
): LoadtestReport {
  const final = result.final;
  const plans: Record<string, PlanFigures> = {};
  for (const plan of [...new Set(run.records.map((r) => r.submission.plan))])
    plans[plan] = figures(
      run.records.filter((r) => r.submission.plan === plan),
      final,
    );
  const overall = figures(run.records, final);
  const submit: Record<string, number> = {};
  for (const r of run.records) if (!r.taskId) count(submit, r.status ? `${r.status} ${r.code}` : `${r.code}`);
  const taskErrors: Record<string, number> = {};
  for (const t of final.values())
    if (t.state !== 'succeeded') count(taskErrors, `${t.state}: ${t.error ?? ''}`.trim());
  const created = [...final.values()].map((t) => Date.parse(t.created_at));
  const finished = [...final.values()].filter((t) => t.finished_at).map((t) => Date.parse(t.finished_at!));
  const spanS = created.length && finished.length ? (Math.max(...finished) - Math.min(...created)) / 1000 : 0;
  const ended = [...final.values()].filter((t) => t.finished_at);
  const round = (v: number) => Math.round(v * 100) / 100;
  return {
    scenario: {
      name: meta.name ?? null,
      file: meta.file,
      seed: meta.seed,
      speed: meta.speed,
      tasks: run.records.length,
      users: new Set(run.records.map((r) => r.submission.userId)).size,
    },
    url: meta.url,
    run_id: meta.runId,
    started_at: new Date(run.startedAt).toISOString(),
    wall_seconds: round(run.wallMs / 1000),
    submits: {
      sent: run.records.length,
      accepted: overall.accepted,
      deduplicated: run.records.filter((r) => r.deduplicated).length,
      network_retries: run.records.reduce((a, r) => a + r.networkRetries, 0),
      in_flight_retries: run.records.reduce((a, r) => a + r.inFlightRetries, 0),
      latency_ms: roundDist(dist(run.records.filter((r) => r.status !== undefined).map((r) => r.latencyMs))),
      max_late_ms: Math.round(run.maxLateMs),
    },
    plans,
    overall,
    throughput: {
      span_seconds: round(spanS),
      tasks_per_min: spanS > 0 ? round((ended.length / spanS) * 60) : 0,
      images_per_min: spanS > 0 ? round((ended.reduce((a, t) => a + t.progress.done, 0) / spanS) * 60) : 0,
    },
    errors: { submit, tasks: taskErrors },
    audit: { ok: result.ok, checks: result.checks },
    timed_out: run.timedOut,
  };
}

function roundDist(d: Dist): Dist {
  const r = (v: number) => Math.round(v * 10) / 10;
  return { count: d.count, p50: r(d.p50), p90: r(d.p90), p99: r(d.p99), max: r(d.max) };
}

const s = (v: number) =>
  v >= 60 ? `${Math.floor(v / 60)}m${(v % 60).toFixed(0).padStart(2, '0')}s` : `${v.toFixed(1)}s`;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '))
    .join('\n');
}

export function renderText(r: LoadtestReport): string {
  const lines: string[] = [];
  lines.push(
    `darkroom loadtest — ${r.scenario.name ?? r.scenario.file} (seed ${r.scenario.seed}, speed ×${r.scenario.speed})`,
    `${r.url} · run ${r.run_id} · ${r.scenario.tasks} tasks from ${r.scenario.users} users · ${s(r.wall_seconds)} wall`,
    '',
    `submits: ${r.submits.accepted}/${r.submits.sent} accepted · latency p50 ${r.submits.latency_ms.p50} ms, p90 ${r.submits.latency_ms.p90} ms, p99 ${r.submits.latency_ms.p99} ms, max ${r.submits.latency_ms.max} ms`,
    `         retries: ${r.submits.network_retries} after network errors, ${r.submits.in_flight_retries} after 409 in flight · sent at most ${r.submits.max_late_ms} ms late`,
    '',
  );
  const head = [
    'plan',
    'tasks',
    'ended',
    'states',
    'wait p50',
    'p90',
    'max',
    'completion p50',
    'p90',
    'max',
    'images',
  ];
  const row = (name: string, f: PlanFigures) => [
    name,
    String(f.submitted),
    String(
      Object.values(f.states).reduce((a, b) => a + b, 0) - (f.states.queued ?? 0) - (f.states.running ?? 0),
    ),
    Object.entries(f.states)
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
    s(f.queueWait.p50),
    s(f.queueWait.p90),
    s(f.queueWait.max),
    s(f.completion.p50),
    s(f.completion.p90),
    s(f.completion.max),
    `${f.images.delivered}/${f.images.total}`,
  ];
  lines.push(
    table([head, ...Object.entries(r.plans).map(([k, f]) => row(k, f)), row('all', r.overall)]),
    '',
    `throughput: ${r.throughput.tasks_per_min} tasks/min, ${r.throughput.images_per_min} images/min over ${s(r.throughput.span_seconds)} (first submit → last end)`,
  );
  const errs = [
    ...Object.entries(r.errors.submit).map(([k, v]) => `submit ${k}: ${v}`),
    ...Object.entries(r.errors.tasks).map(([k, v]) => `task ${k}: ${v}`),
  ];
  lines.push(`errors: ${errs.length ? '' : 'none'}`, ...errs.map((e) => `  ${e}`), '', 'audit:');
  for (const c of r.audit.checks) {
    lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name.padEnd(8)} ${c.detail}`);
    for (const f of c.failures) lines.push(`         - ${f}`);
  }
  lines.push('', r.audit.ok ? 'audit passed' : 'AUDIT FAILED');
  return lines.join('\n');
}
