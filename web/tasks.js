// The task table with filters (state, plan, user, creation time), from /v1/admin/tasks.
import { api } from './api.js';
import { h, fill } from './dom.js';
import { dateTime, num } from './format.js';
import { t } from './i18n.js';

const STATES = ['queued', 'running', 'succeeded', 'partial', 'failed', 'canceled'];
const PAGE = 50;

// since/until are datetime-local values (the browser's local time); the API takes instants.
const filters = { state: '', plan: '', user_id: '', since: '', until: '' };
const TIME_PARAMS = { since: 'created_after', until: 'created_before' };

function instant(local) {
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}
let form;

export async function fetchTasks() {
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const [k, v] of Object.entries(filters)) {
    if (!v) continue;
    if (k in TIME_PARAMS) {
      const at = instant(v);
      if (at) q.set(TIME_PARAMS[k], at);
    } else q.set(k, v);
  }
  return api(`/v1/admin/tasks?${q}`);
}

function select(name, values, labelOf) {
  return h(
    'select',
    { name, id: `filter-${name}` },
    h('option', { value: '' }, t('tk.any')),
    values.map((v) => h('option', { value: v, selected: filters[name] === v }, labelOf(v))),
  );
}

function timeInput(name) {
  return h('input', { type: 'datetime-local', step: 1, name, id: `filter-${name}`, value: filters[name] });
}

function buildForm(plans, onChange) {
  const user = h('input', {
    name: 'user_id',
    id: 'filter-user',
    value: filters.user_id,
    placeholder: t('tk.any'),
    autocomplete: 'off',
  });
  const el = h(
    'form',
    {
      class: 'filters',
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(el);
        for (const k of Object.keys(filters)) filters[k] = String(data.get(k) ?? '').trim();
        onChange();
      },
    },
    h(
      'label',
      {},
      t('tk.state'),
      select('state', STATES, (s) => t(`state.${s}`)),
    ),
    h(
      'label',
      {},
      t('tk.plan'),
      select('plan', plans, (p) => p),
    ),
    h('label', {}, t('tk.user'), user),
    h('label', {}, t('tk.since'), timeInput('since')),
    h('label', {}, t('tk.until'), timeInput('until')),
    h('button', { type: 'submit' }, t('tk.apply')),
  );
  el.addEventListener('change', () => el.requestSubmit());
  return el;
}

export function stateBadge(state) {
  return h('span', { class: `state s-${state}`, dataset: { state } }, t(`state.${state}`));
}

export function renderTasks(root, page, plans, onChange) {
  if (!form || !root.contains(form)) {
    form = buildForm(plans, onChange);
    fill(
      root,
      form,
      h('table', { class: 'grid tasks', id: 'task-table' }),
      h('p', { class: 'muted', id: 'task-note' }),
    );
  }
  const table = root.querySelector('#task-table');
  fill(
    table,
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['tk.id', 'tk.user', 'tk.type', 'tk.plan', 'tk.state', 'tk.stage', 'tk.progress', 'tk.created'].map(
          (k) => h('th', { class: k === 'tk.progress' ? 'n' : undefined }, t(k)),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      page.tasks.map((task) =>
        h(
          'tr',
          { dataset: { task: task.id, created: task.created_at } },
          h('td', { class: 'mono' }, h('a', { href: `#/tasks/${encodeURIComponent(task.id)}` }, task.id)),
          h('td', {}, task.user_id),
          h('td', {}, task.type),
          h('td', {}, task.plan),
          h('td', {}, stateBadge(task.state)),
          h('td', {}, task.stage ?? '–'),
          h(
            'td',
            { class: 'n' },
            `${num(task.progress.done)}/${num(task.progress.total)}${task.progress.failed ? ` (−${num(task.progress.failed)})` : ''}`,
          ),
          h('td', {}, dateTime(task.created_at)),
        ),
      ),
    ),
  );
  root.querySelector('#task-note').textContent = page.tasks.length ? '' : t('tk.empty');
}

/** Forgets the built form (after a language change). */
export function resetTasks() {
  form = undefined;
}
