import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { createApiKey } from '../../src/api/auth/manage.ts';
import { loadScenario } from '../../src/sim/scenario.ts';
import { parseSweep, parseTargets, runSweep, type SweepResult } from '../../src/sim/sweep.ts';
import { CHROMIUM, launchChromium } from '../helpers/chromium.ts';
import { PG_URL } from '../helpers/db.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ARTIFACTS = path.join(ROOT, 'test-artifacts', 'dashboard');
const WAIT = { timeout: 180_000 };

const skip =
  !existsSync(CHROMIUM) && !process.env.DARKROOM_REQUIRE_POSTGRES
    ? `no ${CHROMIUM} (apt-get install chromium); .ci/run installs it and runs this test`
    : false;

const SCENARIO = '02-ten-pro-at-once';
const SWEEP = 'concurrency=2,4,6';
// The store step (5 images at once, ~2 s each: ~280 s for the 700 images) bounds this scenario
// near 5 minutes: at concurrency 6 the planner put p95 at 298 s with one store job per image and
// 304 s with store jobs of a batch, so a 5 m target sat on that edge. At 6 m, 2 misses and 4 meets.
const TARGET = 'p95_completion=6m';

/**
 * The Capacity page in real headless Chromium against a real server (auth on): pick a shipped
 * scenario, sweep the provider's concurrency, run, see the run go through `running`, then the
 * charts, the table and the recommendation. The expected figures come from the CLI planner's
 * own sweep (src/sim/sweep.ts) on the server's configuration, run in this process.
 */
describe('dashboard Capacity page in headless Chromium', { skip }, () => {
  let server: TestServer;
  let browser: Browser;
  let page: Page;
  let adminKey: string;
  let expected: SweepResult;

  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    server = await startTestServer(PG_URL ? 'postgres' : 'pglite', { auth: { enabled: true } });
    adminKey = (await createApiKey(server.ctx.db, 'admin', 'capacity test')).key;
    expected = runSweep(
      server.config,
      loadScenario(path.join(ROOT, 'scenarios', `${SCENARIO}.yaml`)),
      parseSweep(SWEEP),
      parseTargets(TARGET),
    );
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, locale: 'en-US' });
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const shot = (name: string) =>
    page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

  it('runs a sweep from the page and shows its charts, table and recommendation', async () => {
    await page.goto(server.baseUrl);
    await page.fill('#key', adminKey);
    await page.click('#login-form button[type=submit]');
    await page.locator('#ov-queued .value').waitFor(WAIT);

    await page.click('#nav a[data-view="capacity"]');
    await page.locator(`#cap-scenario option[value="${SCENARIO}"]`).waitFor({ state: 'attached', ...WAIT });
    // 01-sixty-users needs a plan this server lacks: listed, not selectable.
    assert.equal(await page.locator('#cap-scenario option[value="01-sixty-users"]').isDisabled(), true);
    await page.selectOption('#cap-scenario', SCENARIO);
    await page.locator('#cap-description', { hasText: 'Ten users submit a Pro task' }).waitFor(WAIT);
    await page.selectOption('#cap-setting', 'concurrency');
    await page.fill('#cap-values', SWEEP.split('=')[1]!);
    await page.fill('#cap-target', TARGET);
    // Every state the view passes through, whatever the timing (a string: no DOM types here).
    await page.evaluate(`(() => {
      const root = document.getElementById('view-capacity');
      window.__capStates = [];
      new MutationObserver(() => window.__capStates.push(root.dataset.state)).observe(root, {
        attributes: true,
        attributeFilter: ['data-state'],
      });
    })()`);
    await page.click('#cap-run');
    await page.locator('#view-capacity[data-state="succeeded"]').waitFor({ state: 'attached', ...WAIT });
    const states = (await page.evaluate('window.__capStates')) as string[];
    assert.equal(states[0], 'running', `states: ${states.join(', ')}`);

    // The table: one row per value, meets as the CLI planner decided it.
    const rows = page.locator('#cap-table tbody tr');
    assert.equal(await rows.count(), expected.rows.length);
    for (const [i, row] of expected.rows.entries()) {
      const tr = rows.nth(i);
      assert.equal(await tr.getAttribute('data-value'), String(row.value));
      assert.equal(await tr.getAttribute('data-meets'), String(row.meets));
      const cells = await tr.locator('td').allInnerTexts();
      assert.equal(cells[cells.length - 1], row.meets ? 'yes' : 'no');
    }
    assert.notEqual(expected.best, undefined, 'the chosen sweep has a value meeting the target');
    assert.equal(
      await page.locator('#cap-best').innerText(),
      `Smallest concurrency meeting ${TARGET}: ${expected.best}`,
    );
    assert.equal(await page.locator('#cap-table tr.best').getAttribute('data-value'), String(expected.best));

    // Both charts drew (uPlot: a canvas and one legend entry per series).
    const providers = expected.rows[0]!.report.providers.length;
    for (const [id, series] of [
      ['cap-chart-time', 3],
      ['cap-chart-use', 2 * providers],
    ] as const) {
      await page.locator(`#${id} canvas`).waitFor(WAIT);
      assert.equal(await page.locator(`#${id} .u-legend .u-series`).count(), series, id);
    }
    await page.locator('#cap-chart-use .u-legend', { hasText: 'main busy' }).waitFor(WAIT);
    await shot('11-capacity');

    await page.click('#lang');
    await page.locator('#nav a[data-view="capacity"]', { hasText: '容量' }).waitFor(WAIT);
    await page
      .locator('#cap-best', { hasText: `满足 ${TARGET} 的最小 concurrency：${expected.best}` })
      .waitFor(WAIT);
    await page.locator('#cap-table th', { hasText: '完成 p95' }).waitFor(WAIT);
    await shot('12-capacity-zh');
    await page.click('#lang');
    await page.locator('#nav a[data-view="capacity"]', { hasText: 'Capacity' }).waitFor(WAIT);
  });

  it('says why a run is refused', async () => {
    await page.fill('#cap-values', '1..40');
    await page.click('#cap-run');
    await page.locator('#cap-status.error', { hasText: 'at most 12' }).waitFor(WAIT);
  });
});
