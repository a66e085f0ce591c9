// The dashboard shell: login, hash routing, and one poll loop (every POLL_MS) that samples
// /v1/admin/stats for the charts and refreshes the open view. darkroom has no admin event
// stream, so the overview polls; a task's detail view follows the task's own SSE stream.
import { ApiError, api, isMissingRoute, session } from './api.js';
import { renderAlerts } from './alerts.js';
import { fetchTask, renderTask, stopFollowing } from './detail.js';
import { time } from './format.js';
import { applyStatic, currentLang, setLang, t } from './i18n.js';
import { recordSample, renderOverview, resetOverview, resizeOverview } from './overview.js';
import { renderProviders } from './providers.js';
import { fetchTasks, renderTasks, resetTasks } from './tasks.js';

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const VIEWS = ['overview', 'providers', 'tasks', 'task', 'alerts'];

let timer;
let running = false;
let again = false;
let hasAlerts = false;

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [view, id] = hash.split('/');
  if (view === 'tasks' && id) return { view: 'task', id: decodeURIComponent(id) };
  return { view: VIEWS.includes(view) ? view : 'overview' };
}

function showLogin(message) {
  clearTimeout(timer);
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
  await refresh();
}

async function poll() {
  const { view, id } = route();
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('active', a.dataset.view === view || (view === 'task' && a.dataset.view === 'tasks'));
  if (view !== 'task') stopFollowing();
  const stats = await api('/v1/admin/stats');
  recordSample(stats);
  const root = $(`view-${view}`);
  if (view === 'overview') renderOverview(root, stats);
  else if (view === 'providers') renderProviders(root, await api('/v1/admin/providers'));
  else if (view === 'tasks') renderTasks(root, await fetchTasks(), Object.keys(stats.by_plan), refresh);
  else if (view === 'task') renderTask(root, await fetchTask(id), refresh);
  else if (view === 'alerts' && hasAlerts) renderAlerts(root, await api('/v1/admin/alerts'));
  $('live').className = 'live ok';
  $('live').textContent = t('live.ok', { time: time(stats.now) });
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
    $('live').className = 'live error';
    $('live').textContent = t('live.error', { message: error.message });
  }
  running = false;
  if (again) {
    again = false;
    return refresh();
  }
  timer = setTimeout(refresh, POLL_MS);
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
  showLogin();
});

$('lang').addEventListener('click', () => {
  setLang(currentLang() === 'zh' ? 'en' : 'zh');
  renderLangButton();
  resetOverview();
  resetTasks();
  if (session.key()) void refresh();
});

window.addEventListener('hashchange', () => {
  if (session.key()) void refresh();
});
window.addEventListener('resize', () => resizeOverview());

setLang(currentLang());
renderLangButton();
applyStatic();
if (session.key()) void showApp();
else showLogin();
