// One task: state, stage, progress, credits, timeline, images, its event history (admin API,
// fetched incrementally by event id), and the retry and cancel buttons (admin API). While the
// task is active its SSE stream wakes the page, so a change shows without waiting for a poll.
import { api, stream } from './api.js';
import { h, fill } from './dom.js';
import { dateTime, num, time } from './format.js';
import { t } from './i18n.js';
import { stateBadge } from './tasks.js';

const ACTIVE = new Set(['queued', 'running']);
const SHOWN_EVENTS = 200;
let live; // { id, controller }
let history = { id: undefined, events: [], after: 0 };

/** The events of task `id` past those already read (every page of them). */
async function fetchHistory(id) {
  if (history.id !== id) history = { id, events: [], after: 0 };
  const mine = history;
  for (;;) {
    const page = await api(`/v1/admin/tasks/${encodeURIComponent(id)}/events?after=${mine.after}&limit=500`);
    mine.events.push(...page.events);
    if (page.events.length) mine.after = page.events[page.events.length - 1].id;
    if (page.next_after === null) return mine.events;
  }
}

export async function fetchTask(id) {
  const [task, events] = await Promise.all([api(`/v1/tasks/${encodeURIComponent(id)}`), fetchHistory(id)]);
  return { task, events };
}

async function act(task, action, onDone) {
  const status = document.getElementById('task-action-status');
  status.className = 'status';
  status.textContent = '…';
  const id = encodeURIComponent(task.id);
  try {
    await api(`/v1/admin/tasks/${id}/${action}`, { method: 'POST', body: {} });
    status.textContent = t('td.done', { action: t(`td.${action}`) });
  } catch (error) {
    status.className = 'status error';
    status.textContent = `${error.code ? `${error.code}: ` : ''}${error.message}`;
  }
  onDone();
}

function follow(task, onChange) {
  if (live?.id === task.id) return;
  stopFollowing();
  if (!ACTIVE.has(task.state)) return;
  const controller = new AbortController();
  live = { id: task.id, controller };
  stream(`/v1/tasks/${encodeURIComponent(task.id)}/events`, () => onChange(), controller.signal).catch(
    () => {},
  );
}

export function stopFollowing() {
  live?.controller.abort();
  live = undefined;
}

const counts = (d) => `${num(d.done)}/${num(d.total)}${d.failed ? ` (−${num(d.failed)})` : ''}`;

/** One outbox row in words: src/store/events.ts lists the types, src/pipeline writes their data. */
function eventText({ type, data }) {
  switch (type) {
    case 'stage':
      return t('ev.stage', { stage: data.stage });
    case 'progress':
      return t('ev.progress', { n: counts(data) });
    case 'step_progress':
      return t('ev.step_progress', {
        step: data.step,
        first: data.first_index,
        count: data.count,
        pct: num((data.fraction ?? 0) * 100),
      });
    case 'finished':
      return t('ev.finished', {
        state: t(`state.${data.state}`),
        n: counts(data),
        refunded: num(data.credits_refunded ?? 0),
      });
    case 'retried':
      return t('ev.retried', {
        attempt: data.attempt,
        n: num(data.images),
        charged: num(data.credits_charged ?? 0),
        by: data.by ?? '',
      });
    case 'cancel_requested':
      return t('ev.cancel_requested', { reason: data.reason ?? '' });
    case 'queued':
    case 'running':
      return t(`ev.${type}`);
    default:
      return `${type} ${JSON.stringify(data)}`;
  }
}

function eventList(events) {
  if (!events.length) return h('p', { class: 'muted', id: 'task-events' }, t('td.no_events'));
  const shown = events.slice(-SHOWN_EVENTS).reverse();
  return [
    h(
      'ol',
      { class: 'events', id: 'task-events' },
      shown.map((e) =>
        h(
          'li',
          { dataset: { type: e.type, id: e.id } },
          h('span', { class: 'mono muted when' }, dateTime(e.created_at)),
          h('span', { class: 'ev-type' }, e.type),
          h('span', {}, eventText(e)),
        ),
      ),
    ),
    events.length > shown.length
      ? h('p', { class: 'muted' }, t('td.events_more', { n: num(events.length - shown.length) }))
      : '',
  ];
}

let rendered = '';

export function renderTask(root, { task, events }, refresh) {
  follow(task, refresh);
  // Signed image links change on every read; re-render only when something shown changed.
  const shown = JSON.stringify([
    document.documentElement.lang,
    { ...task, images: task.images.map((i) => i.index), position: undefined, predicted_start_at: undefined },
    events.length ? events[events.length - 1].id : 0,
  ]);
  if (shown === rendered && root.contains(document.getElementById('task-id'))) return;
  rendered = shown;
  const p = task.progress;
  const ratio = p.total ? (p.done + p.failed) / p.total : 0;
  const canRetry = task.state === 'failed' || task.state === 'partial';
  const canCancel = ACTIVE.has(task.state);
  // The outcome of an action stays shown across re-renders of the same task only.
  const previous = document.getElementById('task-action-status');
  const status = previous?.dataset.task === task.id ? previous : undefined;
  fill(
    root,
    h('a', { href: '#/tasks', class: 'back' }, t('td.back')),
    h(
      'header',
      { class: 'task-head' },
      h('h2', { class: 'mono', id: 'task-id' }, task.id),
      stateBadge(task.state),
      h('span', { class: 'spacer' }),
      h(
        'button',
        { id: 'retry', type: 'button', disabled: !canRetry, onclick: () => act(task, 'retry', refresh) },
        t('td.retry'),
      ),
      h(
        'button',
        {
          id: 'cancel',
          type: 'button',
          class: 'danger',
          disabled: !canCancel,
          onclick: () => act(task, 'cancel', refresh),
        },
        t('td.cancel'),
      ),
    ),
    status ??
      h('p', { id: 'task-action-status', class: 'status', role: 'status', dataset: { task: task.id } }),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, t('tk.user')),
      h('dd', {}, task.user_id),
      h('dt', {}, `${t('tk.type')} · ${t('tk.plan')}`),
      h('dd', {}, `${task.type} · ${task.plan}`),
      h('dt', {}, t('tk.stage')),
      h('dd', { id: 'task-stage' }, task.stage ?? '–'),
      h('dt', {}, t('tk.progress')),
      h(
        'dd',
        {},
        h(
          'div',
          { class: 'meter wide' },
          h(
            'span',
            { class: 'n', id: 'task-progress' },
            `${num(p.done)}/${num(p.total)}${p.failed ? ` (−${num(p.failed)})` : ''}`,
          ),
          h(
            'div',
            { class: `bar ${p.failed ? 'hot' : 'ok'}` },
            h('i', { style: `width:${(ratio * 100).toFixed(1)}%` }),
          ),
        ),
        ACTIVE.has(task.state) && task.position !== undefined && task.position !== null
          ? h('span', { class: 'muted' }, ` ${t('td.position', { n: task.position })}`)
          : '',
        ACTIVE.has(task.state) && task.predicted_finish_at
          ? h('span', { class: 'muted' }, ` · ${t('td.eta', { time: time(task.predicted_finish_at) })}`)
          : '',
      ),
      h('dt', {}, t('td.credits')),
      h(
        'dd',
        { id: 'task-credits' },
        `${t('td.charged', { n: num(task.credits_charged) })} · ${t('td.refunded', { n: num(task.credits_refunded) })}`,
      ),
      h('dt', {}, t('td.timeline')),
      h(
        'dd',
        {},
        `${t('td.created')} ${dateTime(task.created_at)} · ${t('td.started')} ${dateTime(task.started_at)} · ${t('td.finished')} ${dateTime(task.finished_at)}`,
      ),
      task.error
        ? [h('dt', {}, t('td.error')), h('dd', { class: 'error', id: 'task-error' }, task.error)]
        : '',
    ),
    h('h3', {}, t('td.images')),
    h(
      'div',
      { class: 'thumbs', id: 'task-images' },
      task.images.map((img) =>
        h(
          'a',
          {
            href: img.url,
            target: '_blank',
            rel: 'noopener',
            title: `#${img.index} ${img.width}×${img.height}`,
          },
          h('img', {
            src: img.thumbnail_url,
            alt: `#${img.index}`,
            loading: 'lazy',
            dataset: { index: img.index },
          }),
        ),
      ),
    ),
    h('h3', {}, t('td.events'), ' ', h('span', { class: 'muted' }, `(${num(events.length)})`)),
    eventList(events),
  );
}
