import type { PlanReport, PlanStats } from './metrics.ts';
import { metricValue, type SweepResult } from './sweep.ts';
import { resourceTables } from './report-tables.ts';

/** Plain-text tables for the terminal. */

export function table(header: string[], rows: Array<Array<string | number>>, alignLeft = 1): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((r) =>
      r
        .map((c, i) => (i < alignLeft ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function seconds(s: number): string {
  if (s < 60) return Number.isInteger(s) ? `${s}s` : `${s.toFixed(1)}s`;
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const r = Math.round(s % 60);
    return r === 60 ? `${m + 1}m` : r === 0 ? `${m}m` : `${m}m${pad(r)}s`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  return m === 60 ? `${h + 1}h` : m === 0 ? `${h}h` : `${h}h${pad(m)}m`;
}

function planRow(p: PlanStats): Array<string | number> {
  return [
    p.plan,
    p.submitted,
    p.succeeded + p.partial,
    p.failed + p.canceled + p.rejected + p.unfinished,
    seconds(p.wait.p50),
    seconds(p.wait.p95),
    seconds(p.wait.p99),
    seconds(p.completion.p50),
    seconds(p.completion.p95),
    seconds(p.completion.p99),
    `${p.imagesDone}/${p.images}`,
    p.tasksPerMin,
    p.imagesPerMin,
  ];
}

export function renderText(r: PlanReport, wallMs?: number): string {
  const lines: string[] = [];
  const s = r.settings;
  lines.push(`darkroom plan — ${r.scenario} (seed ${r.seed})`);
  lines.push(
    `config: ${r.config} · workers ${s.workers} (${s.workerSlots} slots) · maxRunningTasks ${s.maxRunningTasks} · perUserRunningTasks ${s.perUserRunningTasks}` +
      (Object.keys(s.overrides).length
        ? ` · ${Object.entries(s.overrides)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`
        : ''),
  );
  lines.push(
    `simulated ${seconds(r.simulatedSeconds)} (first arrival → last task end)${wallMs !== undefined ? ` in ${(wallMs / 1000).toFixed(2)}s` : ''}` +
      (r.stoppedEarly ? ' — STOPPED at the time limit, work left unfinished' : ''),
  );
  lines.push('');
  lines.push(
    table(
      [
        'plan',
        'tasks',
        'done',
        'not done',
        'wait p50',
        'p95',
        'p99',
        'completion p50',
        'p95',
        'p99',
        'images',
        'tasks/min',
        'images/min',
      ],
      [...r.plans.map(planRow), ...(r.plans.length > 1 ? [planRow(r.overall)] : [])],
    ),
  );
  const o = r.overall;
  const notDone = [
    o.failed && `${o.failed} failed`,
    o.partial && `${o.partial} partial`,
    o.canceled && `${o.canceled} canceled (deadline)`,
    o.rejected && `${o.rejected} rejected (queue full)`,
    o.unfinished && `${o.unfinished} unfinished`,
  ].filter(Boolean);
  if (notDone.length) lines.push(`not done: ${notDone.join(', ')}`);
  lines.push('');
  lines.push(`throughput: ${r.throughput.tasksPerMin} tasks/min, ${r.throughput.imagesPerMin} images/min`);
  lines.push(
    `queue depth (tasks waiting to start): max ${r.queue.maxDepth}, mean ${r.queue.meanDepth}; running tasks: max ${r.queue.maxRunning}`,
  );
  lines.push(
    `429s: ${r.rateLimited} · errors: ${r.errors.transient} transient, ${r.errors.timeout} timeout, ${r.errors.permanent} permanent · retries ${r.retries}`,
  );
  for (const t of resourceTables(r)) {
    lines.push('');
    lines.push(table(t.header, t.rows));
  }
  return lines.join('\n');
}

export function renderSweepText(result: SweepResult, wallMs?: number): string {
  const lines: string[] = [];
  const first = result.rows[0]!.report;
  lines.push(
    `darkroom plan — ${first.scenario}: sweep ${result.name} over ${result.rows.map((r) => r.value).join(', ')}${wallMs !== undefined ? ` (${(wallMs / 1000).toFixed(2)}s)` : ''}`,
  );
  lines.push('');
  const targetCols = result.targets.map((t) => t.text.split('=')[0]!);
  lines.push(
    table(
      [
        result.name,
        'wait p50',
        'p95',
        'p99',
        'completion p50',
        'p95',
        'tasks/min',
        'max queue',
        '429s',
        ...targetCols,
        ...(result.targets.length ? ['meets'] : []),
      ],
      result.rows.map((row) => {
        const r = row.report;
        return [
          row.value,
          seconds(r.overall.wait.p50),
          seconds(r.overall.wait.p95),
          seconds(r.overall.wait.p99),
          seconds(r.overall.completion.p50),
          seconds(r.overall.completion.p95),
          r.throughput.tasksPerMin,
          r.queue.maxDepth,
          r.rateLimited,
          ...result.targets.map((t) => {
            const v = metricValue(r, t.metric, t.plan);
            return t.metric.endsWith('_wait') || t.metric.endsWith('_completion') ? seconds(v) : String(v);
          }),
          ...(result.targets.length ? [row.meets ? 'yes' : 'no'] : []),
        ];
      }),
    ),
  );
  if (result.targets.length) {
    lines.push('');
    lines.push(
      result.best !== undefined
        ? `smallest ${result.name} meeting ${result.targets.map((t) => t.text).join(', ')}: ${result.best}`
        : `no value of ${result.name} in ${result.rows[0]!.value}..${result.rows[result.rows.length - 1]!.value} meets ${result.targets.map((t) => t.text).join(', ')}`,
    );
  }
  return lines.join('\n');
}
