import type { SimRun } from './engine.ts';
import { completionsMs, waitsMs, type PlanReport, type PlanStats } from './metrics.ts';
import { seconds } from './report-text.ts';
import { cdfPoints, escapeXml, lineChart, PALETTE, type Series } from './svg.ts';
import { metricValue, type SweepResult } from './sweep.ts';
import { resourceTables } from './report-tables.ts';

/** A self-contained HTML report: inline CSS and SVG, no scripts, no external assets. */

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1000px;color:#111827;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
.meta{color:#4b5563}table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;text-align:right;border-bottom:1px solid #f3f4f6}
th:first-child,td:first-child{text-align:left}th{background:#f9fafb;font-weight:600}.best{background:#dcfce7}
svg{display:block;margin:8px 0;max-width:100%;height:auto;font-family:inherit}.warn{color:#b91c1c;font-weight:600}
`;

const e = (s: string | number) => escapeXml(String(s));

function htmlTable(
  header: string[],
  rows: Array<Array<string | number>>,
  rowClass?: (i: number) => string,
): string {
  return `<table><thead><tr>${header.map((h) => `<th>${e(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map(
      (r, i) =>
        `<tr${rowClass?.(i) ? ` class="${rowClass(i)}"` : ''}>${r.map((c) => `<td>${e(c)}</td>`).join('')}</tr>`,
    )
    .join('')}</tbody></table>`;
}

function planRows(r: PlanReport): Array<Array<string | number>> {
  const row = (p: PlanStats) => [
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
  return [...r.plans.map(row), ...(r.plans.length > 1 ? [row(r.overall)] : [])];
}

function reportBody(r: PlanReport, run: SimRun): string {
  const parts: string[] = [];
  const s = r.settings;
  parts.push(
    `<p class="meta">config ${e(r.config)} · seed ${r.seed} · workers ${s.workers} (${s.workerSlots} slots) · maxRunningTasks ${s.maxRunningTasks} · perUserRunningTasks ${s.perUserRunningTasks}` +
      `${
        Object.keys(s.overrides).length
          ? ` · ${e(
              Object.entries(s.overrides)
                .map(([k, v]) => `${k}=${v}`)
                .join(' '),
            )}`
          : ''
      } · simulated ${e(seconds(r.simulatedSeconds))}</p>`,
  );
  if (r.stoppedEarly)
    parts.push('<p class="warn">The run hit its time limit: some work was left unfinished.</p>');
  parts.push('<h2>Tasks by plan</h2>');
  parts.push(
    htmlTable(
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
      planRows(r),
    ),
  );
  parts.push(
    `<p>Throughput <b>${r.throughput.tasksPerMin}</b> tasks/min, <b>${r.throughput.imagesPerMin}</b> images/min · queue depth max <b>${r.queue.maxDepth}</b>, mean ${r.queue.meanDepth} · running max ${r.queue.maxRunning} · 429s <b>${r.rateLimited}</b> · retries ${r.retries}</p>`,
  );
  parts.push('<h2>Queue depth over time</h2>');
  const t = r.series.tSeconds;
  parts.push(
    lineChart(
      [
        {
          name: 'tasks waiting to start',
          color: PALETTE[1]!,
          points: t.map((x, i) => [x, r.series.queued[i]!]),
          step: true,
        },
        {
          name: 'tasks running',
          color: PALETTE[0]!,
          points: t.map((x, i) => [x, r.series.running[i]!]),
          step: true,
        },
      ],
      {
        title: 'Tasks waiting and running',
        xLabel: 'time since first arrival',
        yLabel: 'tasks',
        xFormat: seconds,
        xTime: true,
      },
    ),
  );
  const plans = r.plans.map((p) => p.plan);
  const cdf = (pick: (tasks: SimRun['tasks']) => number[]): Series[] =>
    plans.map((plan, i) => ({
      name: plan,
      color: PALETTE[i % PALETTE.length]!,
      points: cdfPoints(pick(run.tasks.filter((task) => task.plan === plan)).map((ms) => ms / 1000)),
    }));
  parts.push('<h2>Wait distributions by plan</h2>');
  parts.push(
    lineChart(cdf(waitsMs), {
      title: 'Queue wait (submit → first job start), CDF',
      xLabel: 'seconds',
      yLabel: 'fraction of tasks',
      yMax: 1,
      xFormat: seconds,
      xTime: true,
    }),
  );
  parts.push(
    lineChart(cdf(completionsMs), {
      title: 'Completion time (submit → end), CDF',
      xLabel: 'seconds',
      yLabel: 'fraction of tasks',
      yMax: 1,
      xFormat: seconds,
      xTime: true,
    }),
  );
  parts.push('<h2>Providers and keys</h2>');
  for (const t of resourceTables(r)) parts.push(htmlTable(t.header, t.rows));
  return parts.join('\n');
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${e(title)}</title><style>${CSS}</style></head>
<body><h1>${e(title)}</h1>
${body}
<p class="meta">Generated by <code>darkroom plan</code>: a discrete-event simulation running the scheduler's own policy on a virtual clock.</p>
</body></html>
`;
}

export function renderHtml(report: PlanReport, run: SimRun): string {
  return page(`darkroom plan — ${report.scenario}`, reportBody(report, run));
}

export function renderSweepHtml(result: SweepResult): string {
  const parts: string[] = [];
  const first = result.rows[0]!.report;
  parts.push(`<h2>Sweep of ${e(result.name)}</h2>`);
  if (result.targets.length) {
    parts.push(
      `<p>${
        result.best !== undefined
          ? `Smallest <b>${e(result.name)}</b> meeting ${e(result.targets.map((t) => t.text).join(', '))}: <b>${result.best}</b>`
          : `No value of ${e(result.name)} meets ${e(result.targets.map((t) => t.text).join(', '))}`
      }</p>`,
    );
  }
  parts.push(
    htmlTable(
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
          ...(result.targets.length ? [row.meets ? 'yes' : 'no'] : []),
        ];
      }),
      (i) => (result.rows[i]!.value === result.best ? 'best' : ''),
    ),
  );
  const metrics = result.targets.length
    ? result.targets
    : [{ metric: 'p95_wait' as const, plan: undefined, value: Number.NaN, text: 'p95_wait' }];
  parts.push(
    lineChart(
      [
        ...metrics.map((t, i) => ({
          name: t.text.split('=')[0]!,
          color: PALETTE[i % PALETTE.length]!,
          points: result.rows.map((row): [number, number] => [
            row.value,
            metricValue(row.report, t.metric, t.plan),
          ]),
        })),
      ],
      {
        title: `Target metrics by ${result.name}`,
        xLabel: result.name,
        yLabel: 'value (seconds for times)',
        hLines: result.targets.map((t) => ({ y: t.value, label: `target ${t.text}` })),
      },
    ),
  );
  const shown = result.rows.find((r) => r.value === result.best) ?? result.rows[result.rows.length - 1]!;
  parts.push(`<h2>Details for ${e(result.name)} = ${shown.value}</h2>`);
  parts.push(reportBody(shown.report, shown.run));
  return page(`darkroom plan — ${first.scenario}: sweep ${result.name}`, parts.join('\n'));
}
