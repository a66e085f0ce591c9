/**
 * `darkroom loadtest` as a user runs it: the CLI in its own process (bin/darkroom.cjs) against a
 * real server with the provider simulator. The figures are checked against facts the load test
 * does not produce: the scenario's task count derived by hand, the database's own rows, a proxy's
 * count of the connections it cut. A second run breaks two invariants behind the server's back
 * (an image file deleted, a balance changed without a ledger row) and the audit must fail on both.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { createApiKey } from '../../src/api/auth/manage.ts';
import { testConfigInput, tempDir } from '../helpers/config.ts';
import { DB_KINDS } from '../helpers/db.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'darkroom.cjs');
const KIND = DB_KINDS.includes('postgres') ? 'postgres' : 'pglite';
const RUN_LIMIT_MS = 600_000;

/**
 * 4 users × 2 tasks at 50/50 free/start (apportioned: 2 free users, 2 start users) and 2 more
 * free users a second later: 10 tasks from 6 users, 6 free (2 images) and 4 start (30 images),
 * so 6 × 2 + 4 × 30 = 132 images.
 */
const SCENARIO = {
  name: 'loadtest e2e',
  seed: 7,
  type: 'photography',
  plans: { free: 1, start: 1 },
  arrivals: [
    { burst: { users: 4, tasksPerUser: 2, spreadSeconds: 1 } },
    { burst: { users: 2, atSeconds: 1, plan: 'free' } },
  ],
};
const TASKS = 10;
const USERS = 6;
const IMAGES = 132;

interface Report {
  scenario: { tasks: number; users: number };
  submits: { sent: number; accepted: number; network_retries: number; latency_ms: { count: number } };
  overall: {
    accepted: number;
    states: Record<string, number>;
    images: { delivered: number; total: number };
    completion: { count: number; max: number };
  };
  plans: Record<string, { submitted: number }>;
  audit: { ok: boolean; checks: { name: string; ok: boolean; failures: string[] }[] };
}

function runLoadtest(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'loadtest', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stdout, stderr })));
}

function files(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, encoding: 'utf8' }).map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/**
 * An HTTP proxy in front of the server that, for every third submit, lets the server answer and
 * then cuts the client's connection without passing the answer on: the client cannot know the
 * task exists, and must retry without running the order twice.
 */
async function cuttingProxy(
  target: string,
): Promise<{ url: string; cut: () => number; submits: () => number; close: () => Promise<void> }> {
  let submits = 0;
  let cut = 0;
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k)) headers[k] = v;
    const isSubmit = req.method === 'POST' && req.url === '/v1/tasks';
    const upstream = await fetch(`${target}${req.url}`, {
      method: req.method!,
      headers,
      ...(chunks.length ? { body: Buffer.concat(chunks) } : {}),
    });
    const body = Buffer.from(await upstream.arrayBuffer());
    if (isSubmit && ++submits % 3 === 1) {
      cut++;
      req.socket.destroy();
      return;
    }
    const out: Record<string, string> = {};
    upstream.headers.forEach((v, k) => {
      if (!['content-length', 'transfer-encoding', 'connection', 'keep-alive'].includes(k)) out[k] = v;
    });
    res.writeHead(upstream.status, out).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    cut: () => cut,
    submits: () => submits,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe('darkroom loadtest against a real server', () => {
  let server: TestServer;
  let configFile: string;
  let scenarioFile: string;
  let appKey: string;
  let adminKey: string;

  before(async () => {
    const raw = testConfigInput({ auth: { enabled: true }, credits: { initialGrant: 10 } });
    server = await startTestServer(KIND, raw);
    const dir = tempDir('darkroom-loadtest-');
    configFile = path.join(dir, 'darkroom.yaml');
    writeFileSync(configFile, YAML.stringify(raw));
    scenarioFile = path.join(dir, 'scenario.yaml');
    writeFileSync(scenarioFile, YAML.stringify(SCENARIO));
    appKey = (await createApiKey(server.ctx.db, 'app', 'loadtest')).key;
    adminKey = (await createApiKey(server.ctx.db, 'admin', 'loadtest admin')).key;
  });
  after(async () => {
    await server?.stop();
  });

  it(
    'submits the scenario through connection cuts, every task once, and the audit passes',
    { timeout: RUN_LIMIT_MS },
    async () => {
      const proxy = await cuttingProxy(server.baseUrl);
      try {
        const prefix = 'lt-e2e-ok';
        // An app key cannot add credits: fund the users (initial grant 10) the way an operator would.
        for (const user of ['g0b-00000', 'g0b-00001', 'g0b-00002', 'g0b-00003', 'g1b-00000', 'g1b-00001']) {
          const res = await fetch(`${server.baseUrl}/v1/admin/users/${prefix}-${user}/credits`, {
            method: 'POST',
            headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ delta: 100, reason: 'load test budget' }),
          });
          assert.equal(res.status, 200);
        }
        const run = await runLoadtest([
          '--url',
          proxy.url,
          '--key',
          appKey,
          '-s',
          scenarioFile,
          '-c',
          configFile,
          '--users-prefix',
          prefix,
          '--json',
          '--timeout',
          '300',
          '--poll-max',
          '500',
        ]);
        assert.equal(run.code, 0, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
        const report = JSON.parse(run.stdout) as Report;

        assert.equal(report.scenario.tasks, TASKS);
        assert.equal(report.scenario.users, USERS);
        assert.equal(report.plans.free!.submitted, 6);
        assert.equal(report.plans.start!.submitted, 4);
        assert.equal(report.submits.accepted, TASKS);
        assert.equal(report.overall.states.succeeded, TASKS);
        assert.deepEqual(report.overall.images, { delivered: IMAGES, total: IMAGES });
        assert.ok(report.audit.ok);
        assert.deepEqual(
          report.audit.checks.map((c) => [c.name, c.ok]),
          [
            ['submits', true],
            ['terminal', true],
            ['once', true],
            ['images', true],
            ['ledger', true],
          ],
        );

        // The proxy cut a third of the submits after the server had answered: each was retried
        // once with its key, and the server made no second task.
        assert.ok(proxy.cut() >= 3, `cuts: ${proxy.cut()}`);
        assert.equal(report.submits.network_retries, proxy.cut());
        assert.equal(proxy.submits(), TASKS + proxy.cut());
        const { rows } = await server.ctx.db.query<{
          n: number;
          orders: number;
          images: number;
          max_s: number;
        }>(
          `SELECT count(*)::int AS n, count(DISTINCT order_id)::int AS orders,
                sum(images_done)::int AS images,
                max(extract(epoch FROM finished_at - created_at))::float8 AS max_s
           FROM tasks WHERE user_id LIKE $1`,
          [`${prefix}-%`],
        );
        assert.equal(rows[0]!.n, TASKS);
        assert.equal(rows[0]!.orders, TASKS);
        assert.equal(rows[0]!.images, IMAGES);
        // The report's slowest completion is the database's own (ms precision in the API's times).
        assert.ok(
          Math.abs(report.overall.completion.max - rows[0]!.max_s) < 0.002,
          `${report.overall.completion.max} vs ${rows[0]!.max_s}`,
        );
      } finally {
        await proxy.close();
      }
    },
  );

  it(
    'fails the audit (exit 1) when an image is deleted from storage and a balance changes without a ledger row',
    { timeout: RUN_LIMIT_MS },
    async () => {
      const prefix = 'lt-e2e-broken';
      const filesDir = path.join(server.config.home, 'files');
      let deleted: string | undefined;
      let tampered = false;
      let busy = false;
      const sabotage = setInterval(() => {
        if (busy || (deleted && tampered)) return;
        busy = true;
        void (async () => {
          // Once a task exists, the load test has read every balance: change one behind its back.
          if (!tampered) {
            const changed = await server.ctx.db.query(
              `UPDATE users SET balance = balance + 5 WHERE id = $1
               AND EXISTS (SELECT 1 FROM tasks WHERE user_id LIKE $2)`,
              [`${prefix}-g1b-00000`, `${prefix}-%`],
            );
            if (changed.rowCount) tampered = true;
          }
          // An image of a task that has ended (its store jobs will not write it again).
          const { rows } = await server.ctx.db.query<{ id: string }>(
            `SELECT id FROM tasks WHERE user_id LIKE $1 AND state = 'succeeded' ORDER BY id LIMIT 1`,
            [`${prefix}-%`],
          );
          if (!deleted && rows[0]) {
            const png = files(path.join(filesDir, 'tasks', rows[0].id)).find((f) => f.endsWith('.png'));
            if (png) {
              unlinkSync(png);
              deleted = png;
            }
          }
        })().finally(() => (busy = false));
      }, 20);
      try {
        const run = await runLoadtest([
          '--url',
          server.baseUrl,
          '--key',
          adminKey,
          '-s',
          scenarioFile,
          '-c',
          configFile,
          '--users-prefix',
          prefix,
          '--json',
          '--timeout',
          '300',
          '--poll-max',
          '500',
        ]);
        assert.equal(run.code, 1, `exit ${run.code}\n${run.stdout}\n${run.stderr}`);
        assert.ok(deleted, 'the sabotage deleted an image');
        assert.ok(tampered, 'the sabotage changed a balance');
        const report = JSON.parse(run.stdout) as Report;
        assert.equal(report.audit.ok, false);
        const byName = new Map(report.audit.checks.map((c) => [c.name, c]));
        assert.equal(byName.get('terminal')!.ok, true);
        assert.equal(byName.get('once')!.ok, true);
        const images = byName.get('images')!;
        assert.equal(images.ok, false);
        const taskId = path.basename(path.dirname(deleted));
        const index = Number(path.basename(deleted).slice(0, 4));
        assert.equal(images.failures.length, 1, images.failures.join('\n'));
        assert.match(images.failures[0]!, new RegExp(`^${taskId} image ${index}: 404 `));
        const ledger = byName.get('ledger')!;
        assert.equal(ledger.ok, false);
        // With an admin key the load test topped up the users short of credits: the two Start
        // users (apportioned free, start, free, start) need 2 × 30 and hold the grant of 10.
        const { rows: adjusts } = await server.ctx.db.query<{ user_id: string; delta: number }>(
          `SELECT user_id, delta FROM credit_ledger WHERE reason = 'adjust' AND user_id LIKE $1 ORDER BY user_id`,
          [`${prefix}-%`],
        );
        assert.deepEqual(adjusts, [
          { user_id: `${prefix}-g0b-00001`, delta: 50 },
          { user_id: `${prefix}-g0b-00003`, delta: 50 },
        ]);
        assert.equal(ledger.failures.length, 1);
        assert.match(ledger.failures[0]!, new RegExp(`^${prefix}-g1b-00000: .* balance is \\d+$`));
      } finally {
        clearInterval(sabotage);
      }
    },
  );

  it(
    'exits 2 on a usage error: an unreadable scenario, a bad option, an unreachable server',
    { timeout: RUN_LIMIT_MS },
    async () => {
      const missing = await runLoadtest([
        '--url',
        server.baseUrl,
        '--key',
        appKey,
        '-s',
        '/nonexistent.yaml',
      ]);
      assert.equal(missing.code, 2, missing.stderr);
      assert.match(missing.stderr, /cannot read scenario/);
      const speed = await runLoadtest(['--url', server.baseUrl, '-s', scenarioFile, '--speed', '0']);
      assert.equal(speed.code, 2, speed.stderr);
      const down = await runLoadtest([
        '--url',
        'http://127.0.0.1:9',
        '--key',
        appKey,
        '-s',
        scenarioFile,
        '-c',
        configFile,
      ]);
      assert.equal(down.code, 2, down.stderr);
      assert.match(down.stderr, /cannot reach/);
    },
  );
});
