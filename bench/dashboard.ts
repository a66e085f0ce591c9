/**
 * The dashboard's load time in real headless Chromium (Debian's /usr/bin/chromium through
 * playwright-core), on a server holding some finished and queued tasks: the page's own
 * navigation timing, and from navigation until the overview shows its numbers (the stats read
 * and the live stream's first snapshot). Issue 11's target: under a second on the local machine.
 * (The context bypasses the page's CSP only so that the measuring scripts can be evaluated.)
 *
 *   npm run bench -- dashboard
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { createApiKey } from '../src/api/auth/manage.ts';
import { resolveConfig } from '../src/config/load.ts';
import { startServer } from '../src/server.ts';
import { launchChromium } from '../test/helpers/chromium.ts';

type Json = Record<string, unknown>;

const LOADS = 7;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return Math.round(s[Math.floor(s.length / 2)]!);
}

export async function runDashboardBench(log: (m: string) => void): Promise<Json> {
  const home = mkdtempSync(path.join(tmpdir(), 'darkroom-bench-ui-'));
  const config = resolveConfig(
    {
      home,
      server: { port: 0, host: '127.0.0.1', logLevel: 'silent' },
      ...(process.env.DATABASE_URL ? { database: { url: process.env.DATABASE_URL } } : {}),
    },
    {},
    'bench',
  );
  const server = await startServer(config, { log: pino({ level: 'silent' }) });
  const key = (await createApiKey(server.ctx.db, 'admin', 'bench')).key;
  const browser = await launchChromium();
  try {
    log('dashboard: 40 tasks to show');
    for (let i = 0; i < 40; i++) {
      const res = await fetch(`${server.url}/v1/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: `ui${i % 8}`, type: 'photography', plan: 'free', prompt: 'p' }),
      });
      if (res.status !== 202) throw new Error(`submit: ${res.status} ${await res.text()}`);
    }
    const page = await (
      await browser.newContext({ viewport: { width: 1440, height: 900 }, bypassCSP: true })
    ).newPage();
    await page.goto(server.url!);
    await page.fill('#key', key);
    await page.click('#login-form button[type=submit]');
    await page.locator('#ov-queued .value').waitFor({ timeout: 60_000 });
    log(`dashboard: ${LOADS} loads of the overview, logged in`);
    const toNumbers: number[] = [];
    const domReady: number[] = [];
    const loaded: number[] = [];
    const bytes: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      const t0 = performance.now();
      await page.goto(server.url!, { waitUntil: 'commit' });
      await page.waitForFunction(
        `(() => { const v = document.querySelector('#ov-queued .value'); return v && /\\d/.test(v.textContent); })()`,
        undefined,
        { timeout: 60_000 },
      );
      toNumbers.push(performance.now() - t0);
      const nav = (await page.evaluate(
        `(() => { const n = performance.getEntriesByType('navigation')[0];
          const r = performance.getEntriesByType('resource');
          return { dom: n.domContentLoadedEventEnd, load: n.loadEventEnd,
                   bytes: n.transferSize + r.reduce((s, e) => s + e.transferSize, 0) }; })()`,
      )) as { dom: number; load: number; bytes: number };
      domReady.push(nav.dom);
      loaded.push(nav.load);
      bytes.push(nav.bytes);
    }
    return {
      loads: LOADS,
      database: server.ctx.db.kind,
      dom_content_loaded_ms_p50: median(domReady),
      load_event_ms_p50: median(loaded),
      navigation_to_overview_numbers_ms_p50: median(toNumbers),
      navigation_to_overview_numbers_ms_max: Math.round(Math.max(...toNumbers)),
      transferred_bytes_first_load: bytes[0],
      target_ms: 1000,
    };
  } finally {
    await browser.close();
    await server.stop();
    rmSync(home, { recursive: true, force: true });
  }
}
