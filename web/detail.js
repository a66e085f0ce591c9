// One task: state, stage, progress, credits, timeline, images, live events over SSE, and the
// retry and cancel buttons (admin API).
import { api, isMissingRoute, stream } from './api.js';
import { h, fill } from './dom.js';
import { dateTime, num, time } from './format.js';
import { t } from './i18n.js';
import { stateBadge } from './tasks.js';

const ACTIVE = new Set(['queued', 'running']);
let live; // { id, controller, events: [] }

export async function fetchTask(id) {
  return api(`/v1/tasks/${encodeURIComponent(id)}`);
}

async function act(task, action, onDone) {
  const status = document.getElementById('task-action-status');
  status.className = 'status';
  status.textContent = '…';
  const id = encodeURIComponent(task.id);
  try {
    try {
      await api(`/v1/admin/tasks/${id}/${action}`, { method: 'POST', body: {} });
    } catch (error) {
      if (!isMissingRoute(error)) throw error;
      if (action === 'retry') throw new Error(t('td.retry_missing'), { cause: error });
      await api(`/v1/tasks/${id}/cancel`, { method: 'POST', body: {} });
    }
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
  live = { id: task.id, controller, events: [] };
  const mine = live;
  stream(
    `/v1/tasks/${encodeURIComponent(task.id)}/events`,
    (name, data) => {
      mine.events.unshift({ at: new Date().toISOString(), name, data });
      mine.events.length = Math.min(mine.events.length, 50);
      onChange();
    },
    controller.signal,
  ).catch(() => {});
}

export function stopFollowing() {
  live?.controller.abort();
  live = undefined;
}

function eventText({ name, data }) {
  if (name === 'step_progress') return `${name} ${JSON.stringify(data)}`;
  const p = data.progress;
  return `${name}: ${data.state}${data.stage ? ` · ${data.stage}` : ''}${p ? ` · ${p.done}/${p.total}` : ''}`;
}

let rendered = '';

export function renderTask(root, task, refresh) {
  follow(task, refresh);
  // Signed image links change on every read; re-render only when something shown changed.
  const shown = JSON.stringify([
    document.documentElement.lang,
    { ...task, images: task.images.map((i) => i.index), position: undefined, predicted_start_at: undefined },
    live?.id === task.id ? live.events.length : 0,
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
    h('h3', {}, t('td.events')),
    live?.id === task.id && live.events.length
      ? h(
          'ol',
          { class: 'events', id: 'task-events' },
          live.events.map((e) =>
            h('li', {}, h('span', { class: 'mono muted' }, time(e.at)), ' ', eventText(e)),
          ),
        )
      : h('p', { class: 'muted' }, t('td.no_events')),
  );
}
