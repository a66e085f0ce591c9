// Capacity: the planner against this server's own configuration. The operator picks a scenario
// and a sweep; POST /v1/admin/capacity/runs starts it on the server's planner thread and this
// view polls the run, drawing each value's row as it lands. Every figure comes from the
// planner's report (src/sim, as `darkroom plan --sweep --json` prints it); nothing is derived here.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { ApiError, api } from './api.js';
import { h, fill } from './dom.js';
import { duration, num } from './format.js';
import { t } from './i18n.js';

const POLL_MS = 500;
const CUSTOM = '__custom__';
const PALETTE = ['#52a8ff', '#f5a524', '#4cc38a', '#ff6369', '#c58af9', '#9aa4b2'];
const CUSTOM_EXAMPLE = JSON.stringify(
  {
    name: '20 users at once',
    arrivals: [{ burst: { users: 20, plan: 'free' } }],
    latency: { generate: 8000, store: 2000 },
  },
  null,
  2,
);

let meta;
let form;
let run;
let built;
let pollTimer;

const $ = (id) => document.getElementById(id);

function field(labelKey, control, hintKey) {
  return h('label', {}, t(labelKey), control, hintKey ? h('span', { class: 'hint' }, t(hintKey)) : undefined);
}

function buildForm() {
  const scenario = h(
    'select',
    { id: 'cap-scenario', onchange: (e) => update({ scenario: e.target.value }) },
    // A scenario whose plans or task type this server lacks is listed, disabled, with the reason.
    meta.scenarios.map((s) =>
      h(
        'option',
        { value: s.name, selected: s.name === form.scenario, disabled: Boolean(s.problem), title: s.problem },
        s.problem ? `${s.name} — ${t('cp.unfit')}` : `${s.name} — ${s.title}`,
      ),
    ),
    h('option', { value: CUSTOM, selected: form.scenario === CUSTOM }, t('cp.custom')),
  );
  const custom = h('textarea', {
    id: 'cap-custom',
    rows: 8,
    spellcheck: 'false',
    oninput: (e) => (form.custom = e.target.value),
  });
  custom.value = form.custom;
  const setting = h(
    'select',
    { id: 'cap-setting', onchange: (e) => (form.setting = e.target.value) },
    meta.settings.map((s) => h('option', { value: s, selected: s === form.setting }, s)),
  );
  const values = h('input', {
    id: 'cap-values',
    value: form.values,
    size: 10,
    oninput: (e) => (form.values = e.target.value),
  });
  const target = h('input', {
    id: 'cap-target',
    value: form.target,
    size: 18,
    oninput: (e) => (form.target = e.target.value),
  });
  return h(
    'form',
    { id: 'cap-form', class: 'filters', onsubmit: start },
    field('cp.scenario', scenario),
    field('cp.setting', setting),
    field('cp.values', values, 'cp.values_hint'),
    field('cp.target', target, 'cp.target_hint'),
    h('button', { id: 'cap-run', type: 'submit' }, t('cp.run')),
    h('div', { id: 'cap-custom-box', class: 'wide', hidden: form.scenario !== CUSTOM }, custom),
  );
}

function build(root) {
  const timeChart = h('div', { class: 'chart', id: 'cap-chart-time' });
  const useChart = h('div', { class: 'chart', id: 'cap-chart-use' });
  const formEl = buildForm();
  fill(
    root,
    h('p', { class: 'muted' }, t('cp.intro', { max: meta.limits.max_values })),
    formEl,
    h('p', { id: 'cap-description', class: 'muted' }, ''),
    h(
      'div',
      { class: 'cap-status' },
      h('progress', { id: 'cap-progress', max: 1, value: 0, hidden: true }),
      h('span', { id: 'cap-status', role: 'status', class: 'status' }, ''),
    ),
    h('p', { id: 'cap-best', class: 'cap-best' }, ''),
    h('div', { class: 'charts' }, timeChart, useChart),
    h('h2', {}, t('cp.table')),
    h('div', { id: 'cap-table-box' }),
  );
  built = { root, form: formEl, timeChart, useChart, charts: [] };
  describe();
}

function describe() {
  const s = meta.scenarios.find((x) => x.name === form.scenario);
  $('cap-description').textContent = s ? s.description : form.scenario === CUSTOM ? t('cp.custom_hint') : '';
  $('cap-custom-box').hidden = form.scenario !== CUSTOM;
}

function update(change) {
  Object.assign(form, change);
  describe();
}

function setStatus(text, kind = '') {
  const el = $('cap-status');
  if (!el) return;
  el.textContent = text;
  el.className = `status ${kind}`;
}

async function start(event) {
  event.preventDefault();
  let scenario = form.scenario;
  if (scenario === CUSTOM) {
    try {
      scenario = JSON.parse(form.custom);
    } catch (error) {
      setStatus(t('cp.custom_invalid', { message: error.message }), 'error');
      return;
    }
  }
  const body = { scenario, sweep: `${form.setting}=${form.values.trim()}` };
  if (form.target.trim()) body.target = form.target.trim();
  $('cap-run').disabled = true;
  try {
    run = await api('/v1/admin/capacity/runs', { method: 'POST', body });
  } catch (error) {
    if (error instanceof ApiError && error.code === 'planner_busy') {
      const { runs } = await api('/v1/admin/capacity/runs');
      const busy = runs.find((r) => r.state === 'running');
      if (busy) run = await api(`/v1/admin/capacity/runs/${busy.id}`);
    }
    $('cap-run').disabled = false;
    setStatus(error.message, 'error');
    if (run?.state === 'running') follow();
    return;
  }
  show();
  follow();
}

function follow() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(async () => {
    try {
      run = await api(`/v1/admin/capacity/runs/${run.id}`);
      show();
    } catch (error) {
      setStatus(error.message, 'error');
    }
    if (run.state === 'running') follow();
  }, POLL_MS);
}

function show() {
  if (!built || !run) return;
  const { done, total } = run.progress;
  const runningNow = run.state === 'running';
  $('cap-run').disabled = runningNow;
  const progress = $('cap-progress');
  progress.hidden = !runningNow;
  progress.max = total;
  progress.value = done;
  built.root.dataset.state = run.state;
  if (runningNow) setStatus(t('cp.running', { done, total, name: run.scenario.name }));
  else if (run.state === 'failed') setStatus(`${run.error.code}: ${run.error.message}`, 'error');
  else setStatus(t('cp.done', { total, name: run.scenario.name }));
  $('cap-best').textContent = recommendation();
  drawCharts();
  fill($('cap-table-box'), table());
}

/** The CLI's last sweep line: the smallest value meeting every target, or that none does. */
function recommendation() {
  if (run.state !== 'succeeded' || run.targets.length === 0) return '';
  const targets = run.targets.join(', ');
  const values = run.sweep.values;
  return run.best !== null
    ? t('cp.best', { setting: run.sweep.name, targets, value: run.best })
    : t('cp.none_meets', {
        setting: run.sweep.name,
        range: `${values[0]}..${values[values.length - 1]}`,
        targets,
      });
}

function isTime(target) {
  const metric = target.split('=')[0].split('@')[0];
  return metric.endsWith('_wait') || metric.endsWith('_completion');
}

function table() {
  const rows = run.rows.filter(Boolean);
  const header = [
    run.sweep.name,
    t('cp.wait_p50'),
    t('cp.wait_p95'),
    t('cp.wait_p99'),
    t('cp.completion_p50'),
    t('cp.completion_p95'),
    t('cp.tpm'),
    t('cp.max_queue'),
    t('cp.429'),
    ...run.targets.map((x) => x.split('=')[0]),
    ...(run.targets.length ? [t('cp.meets')] : []),
  ];
  return h(
    'table',
    { class: 'grid', id: 'cap-table' },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        header.map((x, i) => h('th', { class: i === 0 ? undefined : 'n' }, x)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.map((row) => {
        const r = row.report;
        return h(
          'tr',
          {
            class: row.value === run.best ? 'best' : undefined,
            dataset: { value: String(row.value), meets: String(row.meets) },
          },
          h('td', {}, num(row.value)),
          [
            duration(r.overall.wait.p50),
            duration(r.overall.wait.p95),
            duration(r.overall.wait.p99),
            duration(r.overall.completion.p50),
            duration(r.overall.completion.p95),
            num(r.throughput.tasksPerMin, 2),
            num(r.queue.maxDepth),
            num(r.rateLimited),
            ...row.targets.map((x) => (isTime(x.target) ? duration(x.value) : num(x.value, 2))),
            ...(row.meets === null ? [] : [row.meets ? t('cp.yes') : t('cp.no')]),
          ].map((v) => h('td', { class: 'n' }, v)),
        );
      }),
    ),
  );
}

function chart(target, title, series, yValues, x) {
  const opts = {
    width: Math.max(280, target.clientWidth - 8),
    height: 220,
    title,
    scales: { x: { time: false } },
    legend: { live: false },
    axes: [
      {
        stroke: '#9aa4b2',
        grid: { stroke: '#2a313c' },
        label: run.sweep.name,
        // Ticks at the swept values only: a sweep of 2, 4, 6 has no 2.5.
        splits: () => x,
        values: (_u, v) => v.map(String),
      },
      { stroke: '#9aa4b2', grid: { stroke: '#2a313c' }, values: (_u, v) => v.map(yValues), size: 70 },
    ],
    series: [{}, ...series.map((s, i) => ({ stroke: PALETTE[i % PALETTE.length], width: 2, ...s }))],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], target);
}

function drawCharts() {
  for (const c of built.charts) c.destroy();
  const rows = run.rows.filter(Boolean);
  const x = rows.map((r) => r.value);
  const o = (f) => rows.map((r) => f(r.report));
  const timeChart = chart(
    built.timeChart,
    t('cp.chart_time'),
    [
      { label: t('cp.completion_p50') },
      { label: t('cp.completion_p95') },
      { label: t('cp.wait_p95'), dash: [6, 4] },
    ],
    (v) => duration(v),
    x,
  );
  timeChart.setData([
    x,
    o((r) => r.overall.completion.p50),
    o((r) => r.overall.completion.p95),
    o((r) => r.overall.wait.p95),
  ]);
  // Quota use per provider the runs called: busy share of its capacity, and the busiest
  // key's RPM use (requests ÷ what its RPM allows over the run), both from the report.
  const names = [...new Set(rows.flatMap((r) => r.report.providers.map((p) => p.name)))];
  const provider = (r, name) => r.report.providers.find((p) => p.name === name);
  const useSeries = names.flatMap((name) => [
    { label: t('cp.busy', { name }) },
    { label: t('cp.rpm_use', { name }), dash: [6, 4] },
  ]);
  const useChart = chart(built.useChart, t('cp.chart_use'), useSeries, (v) => `${num(v)} %`, x);
  useChart.setData([
    x,
    ...names.flatMap((name) => [
      rows.map((r) => (provider(r, name) ? provider(r, name).utilisation * 100 : null)),
      rows.map((r) =>
        provider(r, name) ? Math.max(0, ...provider(r, name).keys.map((k) => k.rpmUse)) * 100 : null,
      ),
    ]),
  ]);
  built.charts = [timeChart, useChart];
}

/** Builds the view once (the app's poll calls this every few seconds); the run redraws it. */
export async function renderCapacity(root) {
  if (built && built.root === root && root.contains(built.form)) return;
  meta ??= await api('/v1/admin/capacity/scenarios');
  form ??= {
    scenario:
      meta.scenarios.find((s) => s.name === '02-ten-pro-at-once' && !s.problem)?.name ??
      meta.scenarios.find((s) => !s.problem)?.name ??
      CUSTOM,
    custom: CUSTOM_EXAMPLE,
    setting: 'concurrency',
    values: '1..6',
    target: 'p95_wait=30s',
  };
  if (!run) {
    // A run started before a reload is still this process's: show it.
    const { runs } = await api('/v1/admin/capacity/runs');
    if (runs[0]) run = await api(`/v1/admin/capacity/runs/${runs[0].id}`);
    if (run?.state === 'running') follow();
  }
  build(root);
  show();
}

/** After a language change: rebuild on the next poll, keeping the form and the run. */
export function resetCapacity() {
  for (const c of built?.charts ?? []) c.destroy();
  built = undefined;
}

export function resizeCapacity() {
  if (built?.root.hidden === false && run) drawCharts();
}
