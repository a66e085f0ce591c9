// Alerts firing and their history, from /v1/admin/alerts (shown only when the server has it).
import { h, fill } from './dom.js';
import { dateTime, num } from './format.js';
import { t } from './i18n.js';

function row(a) {
  return h(
    'tr',
    { class: a.state === 'firing' ? 'firing' : undefined, dataset: { rule: a.rule, state: a.state } },
    h(
      'td',
      {},
      h('span', { class: `state s-${a.state === 'firing' ? 'failed' : 'succeeded'}` }, t(`state.${a.state}`)),
    ),
    h('td', {}, a.key ? `${a.rule} (${a.key})` : a.rule),
    h(
      'td',
      { class: 'n' },
      `${num(a.value, Number.isInteger(a.value) ? 0 : 2)} / ${num(a.threshold, Number.isInteger(a.threshold) ? 0 : 2)}`,
    ),
    h('td', {}, dateTime(a.fired_at)),
    h('td', {}, dateTime(a.resolved_at)),
    h('td', {}, a.summary),
  );
}

function table(id, alerts) {
  return h(
    'table',
    { class: 'grid', id },
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['tk.state', 'al.rule', 'al.value', 'al.fired', 'al.resolved', 'al.summary'].map((k) =>
          h('th', {}, t(k)),
        ),
      ),
    ),
    h('tbody', {}, alerts.map(row)),
  );
}

export function renderAlerts(root, { firing, history }) {
  fill(
    root,
    h('h2', {}, t('al.firing')),
    firing.length ? table('alerts-firing', firing) : h('p', { class: 'muted' }, t('al.none')),
    h('h2', {}, t('al.history')),
    table('alerts-history', history),
  );
}
