// The dashboard shell: login, hash routing, the admin stream (GET /v1/admin/stream: `stats` and
// `series` events as they change, read with fetch since EventSource cannot send the key in a
// header) that drives the overview and the live indicator, and a poll loop (every POLL_MS) for
// the other views; a task's detail view also follows the task's own SSE stream.
import { ApiError, api, isMissingRoute, session, stream } from './api.js';
import { renderAlerts } from './alerts.js';
import { renderCapacity, resetCapacity, resizeCapacity } from './capacity.js';
import { fetchTask, renderTask, stopFollowing } from './detail.js';
import { time } from './format.js';
import { applyStatic, currentLang, setLang, t } from './i18n.js';
import { recordSample, renderOverview, renderSeries, resetOverview, resizeOverview } from './overview.js';
import { renderProviders } from './providers.js';
import { fetchTasks, renderTasks, resetTasks } from './tasks.js';

const POLL_MS = 2000;
const RETRY_MS = [1000, 2000, 5000, 10_000];
const $ = (id) => document.getElementById(id);
const VIEWS = ['overview', 'providers', 'tasks', 'task', 'alerts', 'capacity'];

let timer;
let running = false;
let again = false;
let hasAlerts = false;
let latest; // the newest stats event
let live; // the admin stream's AbortController

let liveShown; // [ok, key, vars]: redrawn in the other language on a switch

function setLive(ok, key, vars) {
  liveShown = [ok, key, vars];
  const el = $('live');
  delete el.dataset.i18n;
  el.className = `live ${ok ? 'ok' : 'error'}`;
  el.textContent = t(key, vars);
}

function onStreamEvent(name, data) {
  if (name === 'stats') {
    latest = data;
    recordSample(data);
    if (route().view === 'overview') renderOverview($('view-overview'), data);
    setLive(true, 'live.ok', { time: time(data.now) });
  } else if (name === 'series') renderSeries(data);
  else if (name === 'error') setLive(false, 'live.error', { message: data.message });
}

/** Keeps the admin stream open while logged in, reconnecting with a growing pause. */
function startStream() {
  stopStream();
  const controller = new AbortController();
  live = controller;
  void (async () => {
    let failures = 0;
    while (!controller.signal.aborted) {
      try {
        await stream(
          '/v1/admin/stream',
          (name, data) => {
            failures = 0;
            onStreamEvent(name, data);
          },
          controller.signal,
        );
        setLive(false, 'live.ended');
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          session.clear();
          showLogin(loginMessage(error));
          return;
        }
        setLive(false, 'live.error', { message: error.message });
      }
      const pause = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)];
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  })();
}

function stopStream() {
  live?.abort();
  live = undefined;
}

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [view, id] = hash.split('/');
  if (view === 'tasks' && id) return { view: 'task', id: decodeURIComponent(id) };
  return { view: VIEWS.includes(view) ? view : 'overview' };
}

function showLogin(message) {
  clearTimeout(timer);
  stopStream();
  latest = undefined;
  stopFollowing();
  $('login').hidden = false;
  $('nav').hidden = true;
  $('logout').hidden = true;
  $('live').hidden = true;
  for (const v of VIEWS) $(`view-${v}`).hidden = true;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message ?? '';
  $('key').focus();
}

function loginMessage(error) {
  if (error instanceof ApiError && error.status === 401) return t('login.invalid');
  if (error instanceof ApiError && error.status === 403) return t('login.forbidden');
  return t('login.network', { message: error.message });
}

async function showApp() {
  $('login').hidden = true;
  $('nav').hidden = false;
  $('logout').hidden = false;
  $('live').hidden = false;
  try {
    await api('/v1/admin/alerts?limit=1');
    hasAlerts = true;
  } catch (error) {
    hasAlerts = false;
    if (!isMissingRoute(error)) console.warn('alerts', error);
  }
  document.querySelector('[data-view="alerts"]').hidden = !hasAlerts;
  startStream();
  await refresh();
}

async function poll() {
  const { view, id } = route();
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('active', a.dataset.view === view || (view === 'task' && a.dataset.view === 'tasks'));
  if (view !== 'task') stopFollowing();
  const root = $(`view-${view}`);
  // The overview is drawn by the stream's events; until the first one, from one read.
  if (view === 'overview') renderOverview(root, latest ?? (await api('/v1/admin/stats')));
  else if (view === 'providers') renderProviders(root, await api('/v1/admin/providers'));
  else if (view === 'tasks') {
    const plans = Object.keys((latest ?? (await api('/v1/admin/stats'))).by_plan);
    renderTasks(root, await fetchTasks(), plans, refresh);
  } else if (view === 'task') renderTask(root, await fetchTask(id), refresh);
  else if (view === 'alerts' && hasAlerts) renderAlerts(root, await api('/v1/admin/alerts'));
  else if (view === 'capacity') await renderCapacity(root);
}

/** Runs one poll now (or right after the one in flight) and schedules the next. */
async function refresh() {
  if (running) {
    again = true;
    return;
  }
  clearTimeout(timer);
  running = true;
  try {
    await poll();
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      session.clear();
      running = false;
      showLogin(loginMessage(error));
      return;
    }
    setLive(false, 'live.error', { message: error.message });
  }
  running = false;
  if (again) {
    again = false;
    return refresh();
  }
  // The overview needs no poll: the stream redraws it.
  if (route().view !== 'overview') timer = setTimeout(refresh, POLL_MS);
}

function renderLangButton() {
  $('lang').textContent = t('lang.other');
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('key').value.trim();
  try {
    await api('/v1/admin/stats', { key });
  } catch (error) {
    showLogin(loginMessage(error));
    return;
  }
  session.set(key);
  $('key').value = '';
  $('login-error').hidden = true;
  await showApp();
});

$('logout').addEventListener('click', () => {
  session.clear();
  stopStream();
  showLogin();
});

$('lang').addEventListener('click', () => {
  setLang(currentLang() === 'zh' ? 'en' : 'zh');
  renderLangButton();
  if (liveShown) setLive(...liveShown);
  resetOverview();
  resetTasks();
  resetCapacity();
  if (session.key()) void refresh();
});

window.addEventListener('hashchange', () => {
  if (session.key()) void refresh();
});
window.addEventListener('resize', () => {
  resizeOverview();
  resizeCapacity();
});

setLang(currentLang());
renderLangButton();
applyStatic();
if (session.key()) void showApp();
else showLogin();
