// Overview: queue, running, workers and throughput from the admin stream's `stats` events, and
// charts of the last hour from its `series` events (the server's per-minute series,
// src/store/latency.ts): queued and running by plan, tasks finished, queue wait and completion
// time. Between two series events the queued/running chart also shows the stats events' samples.
import uPlot from './vendor/uplot/uPlot.esm.js';
import { h, fill } from './dom.js';
import { duration, num, shortId } from './format.js';
import { t } from './i18n.js';

const HOUR_S = 3600;

/** [epoch s, by_plan] of the stats events newer than the last series event. */
let samples = [];
let built;

/** Records one stats sample; called on every poll whichever view is open. */
export function recordSample(stats) {
  const at = Date.parse(stats.now) / 1000;
  samples.push([at, stats.by_plan]);
  const after = lastSeries ? Date.parse(lastSeries.to) / 1000 : at - HOUR_S;
  samples = samples.filter((s) => s[0] > after);
}

function card(id, label) {
  return h(
    'div',
    { class: 'card', id },
    h('div', { class: 'label' }, label),
    h('div', { class: 'value' }, '–'),
    h('div', { class: 'sub' }, ''),
  );
}

function set(id, value, sub = '') {
  const el = document.getElementById(id);
  el.querySelector('.value').textContent = value;
  el.querySelector('.sub').textContent = sub;
}

// Tick steps for a seconds axis: whole seconds, then whole minutes, then hours, so every
// label is short ("45s", "5m", "2h") and fits the axis' fixed width.
const SECOND_STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400];

function secondsLabel(v) {
  if (v === null || v === undefined) return '';
  if (v === 0) return '0';
  if (v < 10) return `${num(v, v % 1 ? 1 : 0)}s`;
  if (v < 60) return `${num(v)}s`;
  if (v < 3600) return `${num(v / 60, v % 60 ? 1 : 0)}m`;
  return `${num(v / 3600, v % 3600 ? 1 : 0)}h`;
}

const AXIS = { stroke: '#9aa4b2', grid: { stroke: '#2a313c' }, size: 56 };
const fromZero = (_u, _min, max) => [0, Math.max(max ?? 0, 1) * 1.1];

function chart(target, title, series, { axes, scales = {} }) {
  const opts = {
    width: Math.max(280, target.clientWidth - 8),
    height: 200,
    title,
    scales: { x: { time: true }, y: { range: fromZero }, ...scales },
    legend: { live: false },
    axes: [{ stroke: AXIS.stroke, grid: AXIS.grid }, ...axes],
    series: [{}, ...series],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], target);
}

const countAxes = { axes: [AXIS] };
const secondsAxes = {
  axes: [{ ...AXIS, incrs: SECOND_STEPS, values: (_u, vals) => vals.map(secondsLabel) }],
};
// Images per minute run an order of magnitude above tasks: their own scale, on the right.
const throughputAxes = {
  axes: [AXIS, { ...AXIS, stroke: '#b48ead', scale: 'img', side: 1, grid: { show: false } }],
  scales: { img: { range: fromZero } },
};

function build(root) {
  const queueChart = h('div', { class: 'chart', id: 'chart-queue' });
  const tpChart = h('div', { class: 'chart', id: 'chart-finished' });
  const waitChart = h('div', { class: 'chart', id: 'chart-wait' });
  const doneChart = h('div', { class: 'chart', id: 'chart-completion' });
  fill(
    root,
    h(
      'div',
      { class: 'cards' },
      card('ov-queued', t('ov.queued')),
      card('ov-running', t('ov.running')),
      card('ov-oldest', t('ov.oldest')),
      card('ov-throughput', t('ov.throughput')),
      card('ov-workers', t('ov.workers')),
      card('ov-totals', t('ov.totals')),
    ),
    h('div', { class: 'charts' }, queueChart, tpChart, waitChart, doneChart),
    h('h2', {}, t('ov.by_plan')),
    h(
      'table',
      { class: 'grid', id: 'ov-plans' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, t('ov.plan')),
          h('th', { class: 'n' }, t('ov.queued')),
          h('th', { class: 'n' }, t('ov.running')),
          h('th', { class: 'n' }, t('ov.submitted')),
        ),
      ),
      h('tbody'),
    ),
  );
  built = {
    root,
    queue: undefined,
    queuePlans: undefined,
    tp: chart(
      tpChart,
      t('ov.chart_tp'),
      [
        { label: t('ov.tpm'), stroke: '#52a8ff', width: 2 },
        { label: t('ov.ipm'), stroke: '#b48ead', width: 1, scale: 'img' },
      ],
      throughputAxes,
    ),
    wait: chart(waitChart, t('ov.chart_wait'), percentileSeries(), secondsAxes),
    done: chart(doneChart, t('ov.chart_done'), percentileSeries(), secondsAxes),
  };
  drawQueue();
  if (lastSeries) renderSeries(lastSeries);
}

const PLAN_COLORS = ['#f5a524', '#52a8ff', '#4cc38a', '#b48ead', '#e5484d', '#88c0d0', '#ebcb8b'];

/**
 * Queued (solid) and running (dashed) per plan: the series' minutes, then the stats samples
 * taken since. A plan shows once it had a task queued or running; with none, the totals (0).
 */
function drawQueue() {
  const points = [];
  if (lastSeries)
    lastSeries.queued_by_plan.forEach((q, i) =>
      points.push([Date.parse(q.at) / 1000, q.plans, lastSeries.running_by_plan[i].plans]),
    );
  for (const [at, byPlan] of samples) {
    const queued = {};
    const running = {};
    for (const [plan, p] of Object.entries(byPlan)) [queued[plan], running[plan]] = [p.queued, p.running];
    points.push([at, queued, running]);
  }
  const busy = new Set();
  for (const [, queued, running] of points)
    for (const plan of Object.keys(queued)) if (queued[plan] > 0 || running[plan] > 0) busy.add(plan);
  const plans = [...busy].sort();
  const key = plans.join('\n');
  if (!built.queue || built.queuePlans !== key) {
    built.queue?.destroy();
    built.queuePlans = key;
    built.queue = chart(
      built.root.querySelector('#chart-queue'),
      t('ov.chart_queue'),
      queueSeries(plans),
      countAxes,
    );
  }
  const count = (m, plan) =>
    plan === undefined ? Object.values(m).reduce((a, b) => a + b, 0) : (m[plan] ?? 0);
  const columns = (plans.length ? plans : [undefined]).flatMap((plan) => [
    points.map((p) => count(p[1], plan)),
    points.map((p) => count(p[2], plan)),
  ]);
  built.queue.setData([points.map((p) => p[0]), ...columns]);
  const el = built.root.querySelector('#chart-queue');
  el.dataset.points = String(points.length);
  el.dataset.minutes = String(lastSeries?.queued_by_plan.length ?? 0);
  el.dataset.plans = plans.join(' ');
}

function queueSeries(plans) {
  if (!plans.length)
    return [
      { label: t('ov.queued'), stroke: PLAN_COLORS[0], width: 2 },
      { label: t('ov.running'), stroke: PLAN_COLORS[0], width: 2, dash: [6, 4] },
    ];
  return plans.flatMap((plan, i) => {
    const stroke = PLAN_COLORS[i % PLAN_COLORS.length];
    return [
      { label: `${plan} · ${t('ov.queued')}`, stroke, width: 2 },
      { label: `${plan} · ${t('ov.running')}`, stroke, width: 2, dash: [6, 4] },
    ];
  });
}

function percentileSeries() {
  return [
    { label: 'p50', stroke: '#4cc38a', width: 2, points: { show: true, size: 4 } },
    { label: 'p95', stroke: '#f5a524', width: 2, points: { show: true, size: 4 } },
  ];
}

let lastSeries;

/**
 * Charts one `series` event: a point per minute of the hour. A minute without tasks is 0 on
 * the throughput chart and a gap on the percentile charts (no task, no percentile).
 */
export function renderSeries(series) {
  lastSeries = series;
  const to = Date.parse(series.to) / 1000;
  samples = samples.filter((s) => s[0] > to);
  if (!built) return;
  drawQueue();
  const from = Date.parse(series.from) / 1000;
  const minutes = Math.ceil((Date.parse(series.to) / 1000 - from) / 60);
  const xs = Array.from({ length: minutes }, (_, i) => from + i * 60);
  const column = (buckets, pick, empty) => {
    const out = xs.map(() => empty);
    for (const b of buckets) {
      const i = Math.round((Date.parse(b.at) / 1000 - from) / 60);
      if (i >= 0 && i < out.length) out[i] = pick(b);
    }
    return out;
  };
  built.tp.setData([
    xs,
    column(series.finished, (b) => b.tasks, 0),
    column(series.finished, (b) => b.images, 0),
  ]);
  for (const [c, buckets] of [
    [built.wait, series.queue_wait],
    [built.done, series.completion],
  ]) {
    c.setData([xs, column(buckets, (b) => b.p50_seconds, null), column(buckets, (b) => b.p95_seconds, null)]);
    c.root.parentElement.dataset.points = String(buckets.length);
  }
  built.root.dataset.seriesTo = series.to;
}

/** Rebuilds the view (after a language change). */
export function resetOverview() {
  for (const c of charts()) c.destroy();
  built = undefined;
}

export function renderOverview(root, stats) {
  if (!built || built.root !== root || !root.contains(built.queue.root)) build(root);
  set('ov-queued', num(stats.queued), t('ov.of_max', { max: num(stats.max_queued) }));
  set('ov-running', num(stats.running));
  set(
    'ov-oldest',
    stats.oldest_queued_age_seconds === null ? t('ov.none') : duration(stats.oldest_queued_age_seconds),
    stats.oldest_queued_task_id ? shortId(stats.oldest_queued_task_id) : '',
  );
  const tp = stats.throughput;
  set(
    'ov-throughput',
    num(tp['5m'].tasks_per_minute, 1),
    `${t('ov.per_min')} · ${t('ov.images_per_min', { n: num(tp['5m'].images_per_minute, 1) })}`,
  );
  set(
    'ov-workers',
    num(stats.workers.live),
    t('ov.slots', { running: num(stats.workers.running), slots: num(stats.workers.slots) }),
  );
  set(
    'ov-totals',
    num(stats.total_submitted),
    `${num(stats.total_succeeded)} ${t('ov.succeeded')} · ${num(stats.total_partial)} ${t('ov.partial')} · ` +
      `${num(stats.total_failed)} ${t('ov.failed')} · ${num(stats.total_canceled)} ${t('ov.canceled')}`,
  );
  fill(
    root.querySelector('#ov-plans tbody'),
    Object.entries(stats.by_plan).map(([plan, p]) =>
      h(
        'tr',
        {},
        h('td', {}, plan),
        h('td', { class: 'n' }, num(p.queued)),
        h('td', { class: 'n' }, num(p.running)),
        h('td', { class: 'n' }, num(p.submitted)),
      ),
    ),
  );
  drawQueue();
}

function charts() {
  return built ? [built.queue, built.tp, built.wait, built.done] : [];
}

export function resizeOverview() {
  for (const c of charts()) {
    const width = Math.max(280, c.root.parentElement.clientWidth - 8);
    c.setSize({ width, height: 200 });
  }
}
