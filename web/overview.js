// Overview: queue, running, workers and throughput from /v1/admin/stats, with charts of the
// last hour built from the samples this page takes (kept in sessionStorage across reloads).
import uPlot from './vendor/uplot/uPlot.esm.js';
import { h, fill } from './dom.js';
import { duration, num, shortId } from './format.js';
import { t } from './i18n.js';

const HOUR_S = 3600;
const HISTORY_KEY = 'darkroom.history';

let samples = loadHistory();
let built;

function loadHistory() {
  try {
    return JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? '[]');
  } catch {
    return [];
  }
}

/** Records one stats sample; called on every poll whichever view is open. */
export function recordSample(stats) {
  const at = Date.parse(stats.now) / 1000;
  samples.push([at, stats.queued, stats.running, stats.throughput['1m'].tasks_per_minute]);
  samples = samples.filter((s) => s[0] >= at - HOUR_S);
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(samples));
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

function chart(target, title, series) {
  const opts = {
    width: Math.max(280, target.clientWidth - 8),
    height: 200,
    title,
    scales: { x: { time: true } },
    legend: { live: false },
    axes: [
      { stroke: '#9aa4b2', grid: { stroke: '#2a313c' } },
      { stroke: '#9aa4b2', grid: { stroke: '#2a313c' } },
    ],
    series: [{}, ...series],
  };
  return new uPlot(opts, [[], ...series.map(() => [])], target);
}

function build(root) {
  const queueChart = h('div', { class: 'chart' });
  const tpChart = h('div', { class: 'chart' });
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
    h('div', { class: 'charts' }, queueChart, tpChart),
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
    queue: chart(queueChart, t('ov.chart_queue'), [
      { label: t('ov.queued'), stroke: '#f5a524', width: 2 },
      { label: t('ov.running'), stroke: '#4cc38a', width: 2 },
    ]),
    tp: chart(tpChart, t('ov.chart_tp'), [{ label: t('ov.tpm'), stroke: '#52a8ff', width: 2 }]),
  };
}

/** Rebuilds the view (after a language change). */
export function resetOverview() {
  built?.queue.destroy();
  built?.tp.destroy();
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
  const cols = (i) => samples.map((s) => s[i]);
  built.queue.setData([cols(0), cols(1), cols(2)]);
  built.tp.setData([cols(0), cols(3)]);
}

export function resizeOverview() {
  if (!built) return;
  for (const c of [built.queue, built.tp]) {
    const width = Math.max(280, c.root.parentElement.clientWidth - 8);
    c.setSize({ width, height: 200 });
  }
}
