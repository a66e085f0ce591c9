import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { Browser, Page } from 'playwright-core';
import { createApiKey } from '../../src/api/auth/manage.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfigInput } from '../helpers/config.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { CHROMIUM, launchChromium } from '../helpers/chromium.ts';
import { waitFor } from '../helpers/wait.ts';

const ARTIFACTS = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'test-artifacts',
  'dashboard',
);
const OPENAI_SECRET = 'sk-dashboard-test-4b1d';
const WAIT = { timeout: 60_000 };

const skip =
  !existsSync(CHROMIUM) && !process.env.DARKROOM_REQUIRE_POSTGRES
    ? `no ${CHROMIUM} (apt-get install chromium); .ci/run installs it and runs this test`
    : false;

/**
 * The dashboard in real headless Chromium against a real server (auth on, PostgreSQL when one
 * answers) whose OpenAI provider is the simulator over HTTP. Each step waits on what the page
 * shows; screenshots of every page land in test-artifacts/dashboard/.
 */
describe('dashboard in headless Chromium', { skip }, () => {
  let fake: FakeProviderHandle;
  let server: RunningServer;
  let dropDb: (() => Promise<void>) | undefined;
  let browser: Browser;
  let page: Page;
  let adminKey: string;
  let base: string;
  const requests: Array<{ url: string; auth: string | undefined }> = [];

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    fake = await startFakeProvider({
      providers: [
        {
          name: 'oai',
          keys: [
            { id: 'o1', secret: OPENAI_SECRET, rpm: 600, concurrency: 4 },
            { id: 'o2', secret: OPENAI_SECRET, rpm: 300, concurrency: 2 },
          ],
          latencyMs: 10,
          jitterMs: 2,
          errorRate: 0,
        },
      ],
    });
    const created = PG_URL ? await createPostgresDatabase() : undefined;
    dropDb = created?.drop;
    const input = testConfigInput({
      auth: { enabled: true },
      // One task runs at a time, so a task held at the provider keeps the next one queued.
      limits: { maxRunningTasks: 1, perUserRunningTasks: 1 },
      // Any queued task fires the `queued` alert, and it resolves once the queue is empty.
      alerts: { evaluateEveryMs: 100, rules: { queued: { threshold: 0 } } },
      providers: {
        openai: {
          type: 'openai',
          model: 'gpt-image-2',
          baseUrl: `${fake.url}/p/oai`,
          concurrency: 4,
          keys: [
            { id: 'o1', secret: 'env:TEST_OPENAI_KEY', rpm: 600, concurrency: 4 },
            { id: 'o2', secret: 'env:TEST_OPENAI_KEY', rpm: 300, concurrency: 2 },
          ],
        },
      },
      ...(created ? { database: { url: created.url } } : {}),
    });
    delete (input.providers as Record<string, unknown>).main;
    input.pipelines = {
      photography: {
        steps: [
          { name: 'generate', provider: 'openai', batchSize: 2 },
          { name: 'store', concurrency: 2 },
        ],
      },
    };
    const config = resolveConfig(input, { TEST_OPENAI_KEY: OPENAI_SECRET }, 'test');
    server = await startServer(config, { log: pino({ level: 'silent' }) });
    base = server.url!;
    adminKey = (await createApiKey(server.ctx.db, 'admin', 'dashboard test')).key;
    browser = await launchChromium();
    // UTC, so the time filter's datetime-local values are the API's instants without an offset.
    const context = await browser.newContext({
      viewport: { width: 1440, height: 900 },
      locale: 'en-US',
      timezoneId: 'UTC',
    });
    page = await context.newPage();
    page.on('request', (request) =>
      requests.push({ url: request.url(), auth: request.headers().authorization }),
    );
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    await fake?.close();
    await dropDb?.();
  });

  const shot = (name: string) =>
    page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

  async function api(method: string, url: string, body?: unknown) {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function submit(userId: string): Promise<string> {
    const r = await api('POST', '/v1/tasks', {
      user_id: userId,
      type: 'photography',
      plan: 'free',
      prompt: 'a pier',
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.id as string;
  }

  async function fault(faults: string[]) {
    const r = await fetch(`${fake.url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'oai', faults }),
    });
    assert.equal(r.status, 200);
  }

  const stateOf = (id: string) => page.locator(`#task-table tr[data-task="${id}"] .state`);
  const detailState = () => page.locator('#view-task .task-head .state');

  /** Every thumbnail of the open task view has loaded as an image. */
  async function imagesLoaded(count: number) {
    await page
      .locator('#task-images img')
      .nth(count - 1)
      .waitFor(WAIT);
    // A string, run in the page: this project's TypeScript has no DOM types.
    await page.waitForFunction(
      `(() => {
        const imgs = [...document.querySelectorAll('#task-images img')];
        return imgs.length === ${count} && imgs.every((img) => img.complete && img.naturalWidth > 0);
      })()`,
      null,
      WAIT,
    );
  }

  it('serves the page and its assets from darkroom, without a key', async () => {
    for (const asset of [
      '/',
      '/ui/app.js',
      '/ui/style.css',
      '/ui/vendor/uplot/uPlot.esm.js',
      '/ui/vendor/uplot/uPlot.min.css',
    ]) {
      const res = await fetch(`${base}${asset}`);
      assert.equal(res.status, 200, asset);
      assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    }
    for (const missing of [
      '/ui/vendor/uplot/uPlot.cjs.js',
      '/ui/nope.js',
      '/ui/%2e%2e/package.json',
      '/v1/nope',
    ]) {
      const res = await fetch(`${base}${missing}`);
      assert.equal(res.status, 404, missing);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'not_found', missing);
    }
  });

  it('refuses a wrong key with a clear error', async () => {
    await page.goto(base);
    await page.locator('#login-form').waitFor(WAIT);
    await shot('01-login');
    await page.fill('#key', 'dk_not_a_real_key');
    await page.click('#login-form button[type=submit]');
    const error = page.locator('#login-error');
    await error.waitFor({ state: 'visible', ...WAIT });
    assert.match(await error.innerText(), /not valid/);
    await shot('02-wrong-key');
    assert.equal(await page.evaluate("sessionStorage.getItem('darkroom.adminKey')"), null);
  });

  it('logs in with the admin key, kept in sessionStorage and out of the URL', async () => {
    await page.fill('#key', adminKey);
    await page.click('#login-form button[type=submit]');
    await page.locator('#ov-queued .value').waitFor(WAIT);
    await page.locator('#ov-workers .value', { hasText: /^1$/ }).waitFor(WAIT);
    assert.equal(await page.evaluate("sessionStorage.getItem('darkroom.adminKey')"), adminKey);
    assert.equal(await page.evaluate('localStorage.length'), 0);
    assert.ok(!page.url().includes(adminKey));
  });

  let blocker: string;
  let target: string;

  it('shows a task queued behind a running one, then succeeded, with its images', async () => {
    await fault(['hang']); // the blocker's call is held open at the simulator until canceled
    blocker = await submit('u-blocker');
    await waitFor(
      'the blocker to run',
      async () => (await api('GET', `/v1/tasks/${blocker}`)).body.state === 'running',
    );
    target = await submit('u-target');

    await page.goto(`${base}/#/tasks`);
    await stateOf(target).and(page.locator('[data-state="queued"]')).waitFor(WAIT);
    await stateOf(blocker).and(page.locator('[data-state="running"]')).waitFor(WAIT);
    await shot('03-tasks-queued');
    await page.goto(`${base}/#/overview`);
    await page.locator('#ov-queued .value', { hasText: /^1$/ }).waitFor(WAIT);
    await page.locator('#ov-running .value', { hasText: /^1$/ }).waitFor(WAIT);
    // The blocker started after a queue wait: the server's per-minute series has a point.
    await page.locator('#chart-wait[data-points]:not([data-points="0"])').waitFor(WAIT);
    // Queued and running by plan after a reload: the server's 60 minutes of the hour (not only
    // what this page sampled since), and the busy plan drawn.
    await page.reload();
    await page.locator('#chart-queue[data-minutes="60"][data-plans~="free"]').waitFor(WAIT);
    await shot('04-overview-busy');
    await page.goto(`${base}/#/alerts`);
    await page.locator('#alerts-firing tr[data-rule="queued"]').waitFor(WAIT);
    await shot('04b-alert-firing');

    // Cancel the blocker from its detail view; the queued task then runs.
    await page.goto(`${base}/#/tasks/${blocker}`);
    await detailState().and(page.locator('[data-state="running"]')).waitFor(WAIT);
    await page.click('#cancel');
    await detailState().and(page.locator('[data-state="canceled"]')).waitFor(WAIT);

    await page.goto(`${base}/#/tasks`);
    await stateOf(target).and(page.locator('[data-state="succeeded"]')).waitFor(WAIT);
    await page.click(`#task-table tr[data-task="${target}"] a`);
    await detailState().and(page.locator('[data-state="succeeded"]')).waitFor(WAIT);
    await imagesLoaded(2);
    assert.match(await page.locator('#task-credits').innerText(), /2 charged · 0 refunded/);
    // Its history from the events API, newest first: submitted, ran, stored both images, ended.
    // Both images came back in one batch of 2 and are stored by one store job (store concurrency
    // 2), so one progress event covers them (it was one per image when each image had its own job).
    await page.locator('#task-events li[data-type="finished"]').waitFor(WAIT);
    const types = await page
      .locator('#task-events li')
      .evaluateAll((lis) => lis.map((li) => li.getAttribute('data-type')));
    assert.equal(types[0], 'finished', types.join(','));
    assert.equal(types[types.length - 1], 'queued', types.join(','));
    assert.equal(types.filter((x) => x === 'progress').length, 1, types.join(','));
    assert.match(await page.locator('#task-events li[data-type="finished"]').innerText(), /ended succeeded/);
    await shot('05-task-detail');
    await page.goto(`${base}/#/alerts`);
    await page.locator('#alerts-firing tr[data-rule="queued"]').waitFor({ state: 'detached', ...WAIT });
    await page.locator('#alerts-history tr[data-rule="queued"][data-state="resolved"]').first().waitFor(WAIT);
  });

  it('filters the table by state, plan, user and creation time', async () => {
    await page.goto(`${base}/#/tasks`);
    await page.selectOption('#filter-state', 'canceled');
    await page.locator(`#task-table tr[data-task="${blocker}"]`).waitFor(WAIT);
    await page.locator(`#task-table tr[data-task="${target}"]`).waitFor({ state: 'detached', ...WAIT });
    await page.selectOption('#filter-state', '');
    await page.fill('#filter-user', 'u-target');
    await page.press('#filter-user', 'Enter');
    await page.locator(`#task-table tr[data-task="${blocker}"]`).waitFor({ state: 'detached', ...WAIT });
    await page.locator(`#task-table tr[data-task="${target}"]`).waitFor(WAIT);
    await page.selectOption('#filter-plan', 'pro');
    await page
      .locator('#task-table tbody tr')
      .first()
      .waitFor({ state: 'detached', ...WAIT });
    await page.selectOption('#filter-plan', '');
    await page.fill('#filter-user', '');
    await page.press('#filter-user', 'Enter');
    await page.locator(`#task-table tr[data-task="${blocker}"]`).waitFor(WAIT);

    // From the target's creation second on: the target shows, and no row was created earlier.
    const created = (await api('GET', `/v1/tasks/${target}`)).body.created_at as string;
    const second = created.slice(0, 19); // UTC (the context's time zone), whole seconds
    await page.fill('#filter-since', second);
    await page.press('#filter-since', 'Enter');
    await page.locator(`#task-table tr[data-task="${target}"]`).waitFor(WAIT);
    await page.waitForFunction(
      `[...document.querySelectorAll('#task-table tbody tr')].every((tr) => tr.dataset.created >= '${second}')`,
      null,
      WAIT,
    );
    // Before that same second as well: an empty window.
    await page.fill('#filter-until', second);
    await page.press('#filter-until', 'Enter');
    await page.locator('#task-note', { hasText: 'No tasks match.' }).waitFor(WAIT);
    await shot('05b-tasks-time-filter');
    await page.fill('#filter-since', '');
    await page.fill('#filter-until', '');
    await page.press('#filter-until', 'Enter');
    await page.locator(`#task-table tr[data-task="${blocker}"]`).waitFor(WAIT);
  });

  it('shows a task the provider refused as failed and refunded, and retries it from the page', async () => {
    await fault(['refusal']);
    const failing = await submit('u-failing');
    await page.goto(`${base}/#/tasks/${failing}`);
    await detailState().and(page.locator('[data-state="failed"]')).waitFor(WAIT);
    assert.match(await page.locator('#task-credits').innerText(), /2 charged · 2 refunded/);
    await page.locator('#task-error').waitFor(WAIT);
    await shot('06-task-failed');
    // The scripted refusal was spent on the one call; the retry's call succeeds.
    await page.click('#retry');
    await page.locator('#task-action-status', { hasText: 'Retry failed images: done' }).waitFor(WAIT);
    await detailState().and(page.locator('[data-state="succeeded"]')).waitFor(WAIT);
    await imagesLoaded(2);
    await page.locator('#task-events li[data-type="retried"]', { hasText: 'attempt 2' }).waitFor(WAIT);
    await shot('07-task-retried');
  });

  it('lists the configured keys with their limits and the last error', async () => {
    await page.goto(`${base}/#/providers`);
    for (const [key, rpm, concurrency] of [
      ['o1', 600, 4],
      ['o2', 300, 2],
    ] as const) {
      const row = page.locator(`tr[data-key="openai/${key}"]`);
      await row.waitFor(WAIT);
      const cells = await row.locator('td').allInnerTexts();
      assert.match(cells[1]!, new RegExp(`/ ${rpm}$`), `rpm of ${key}: ${cells[1]}`);
      assert.match(cells[2]!, new RegExp(`/ ${concurrency}$`), `concurrency of ${key}: ${cells[2]}`);
    }
    // The refused call's error shows on whichever key served it.
    await page
      .locator('tr[data-key^="openai/"] td.error-cell', { hasText: 'safety system' })
      .first()
      .waitFor(WAIT);
    await shot('08-providers');
  });

  it('has every string in both English and Chinese', async () => {
    const missing = await page.evaluate(`import('/ui/i18n.js').then(({ STRINGS }) => {
      const en = Object.keys(STRINGS.en), zh = Object.keys(STRINGS.zh);
      return [...en.filter((k) => !zh.includes(k)).map((k) => 'zh ' + k), ...zh.filter((k) => !en.includes(k)).map((k) => 'en ' + k)];
    })`);
    assert.deepEqual(missing, []);
  });

  it('draws the overview from the admin stream, with the key in a header and never in a URL', async () => {
    await page.goto(`${base}/#/overview`);
    // Tasks have succeeded by now: the completion-time chart has points, sent by the stream.
    await page.locator('#chart-completion[data-points]:not([data-points="0"])').waitFor(WAIT);
    const streams = requests.filter((r) => new URL(r.url).pathname === '/v1/admin/stream');
    assert.ok(streams.length >= 1, 'the page opened the admin stream');
    for (const r of streams) assert.equal(r.auth, `Bearer ${adminKey}`);
    for (const r of requests) assert.ok(!r.url.includes(adminKey), r.url);

    // A wall display and a laptop: nothing wider than the screen, the charts redrawn to fit.
    for (const [name, width, height] of [
      ['11-overview-wall', 2560, 1440],
      ['12-overview-laptop', 1280, 800],
    ] as const) {
      await page.setViewportSize({ width, height });
      await page.waitForFunction(
        `(() => {
          const d = document.documentElement;
          const charts = [...document.querySelectorAll('.chart')];
          return d.scrollWidth <= d.clientWidth && charts.length === 4 &&
            charts.every((c) => c.querySelector('.uplot').offsetWidth <= c.clientWidth);
        })()`,
        null,
        WAIT,
      );
      await shot(name);
    }
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  it('switches to Chinese', async () => {
    await page.goto(`${base}/#/overview`);
    await page.click('#lang');
    await page.locator('#nav a[data-view="overview"]', { hasText: '总览' }).waitFor(WAIT);
    await page.locator('#ov-queued .label', { hasText: '排队中' }).waitFor(WAIT);
    await shot('09-overview-zh');
    await page.click('#lang');
    await page.locator('#nav a[data-view="overview"]', { hasText: 'Overview' }).waitFor(WAIT);
    await shot('10-overview');
  });
});
