import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { prepareJob } from '../../src/capacity/request.ts';
import { createCapacityRunner, type CapacityRunView } from '../../src/capacity/runs.ts';
import type { PlanReport } from '../../src/sim/metrics.ts';
import { bearer, useAuthApp, type AuthApp } from '../helpers/auth-app.ts';
import { tempDir, testConfig, testConfigInput } from '../helpers/config.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LONG = { timeoutMs: 5 * 60_000, intervalMs: 100 };

async function post(t: AuthApp, body: unknown, key = t.adminKey) {
  return t.app.inject({
    method: 'POST',
    url: '/v1/admin/capacity/runs',
    headers: bearer(key),
    payload: body as Record<string, unknown>,
  });
}

async function read(t: AuthApp, id: string): Promise<CapacityRunView> {
  const res = await t.app.inject({
    method: 'GET',
    url: `/v1/admin/capacity/runs/${id}`,
    headers: bearer(t.adminKey),
  });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

async function runToEnd(t: AuthApp, body: unknown): Promise<CapacityRunView> {
  const res = await post(t, body);
  assert.equal(res.statusCode, 202, res.body);
  const started = res.json<CapacityRunView>();
  assert.equal(started.state, 'running');
  return waitFor(
    `capacity run ${started.id} to end`,
    async () => {
      const run = await read(t, started.id);
      return run.state !== 'running' && run;
    },
    LONG,
  );
}

/**
 * Twelve users submit one Free task each (2 images: one generate call, batchSize 5) at t = 0;
 * a call takes exactly 1 s and storing takes 0 s; nothing else limits (40 task slots, 16 worker
 * slots, a key of concurrency 100). With the provider's concurrency c, the calls run in waves
 * of c: the k-th task (1-based) ends at ⌈k / c⌉ s. So by hand: completion max = ⌈12 / c⌉ s,
 * p50 (nearest rank, the 6th) = ⌈6 / c⌉ s, p95 (the 12th) = ⌈12 / c⌉ s, and throughput
 * 12 tasks ÷ ⌈12 / c⌉ s. A p95 completion of 5 s needs ⌈12 / c⌉ ≤ 5: c = 3 is the smallest.
 */
const TWELVE_CALLS = {
  name: 'twelve one-second calls',
  arrivals: [{ burst: { users: 12, plan: 'free' } }],
  latency: { generate: 1000, store: 0 },
};

const handConfig = {
  providers: { main: { concurrency: 20, keys: [{ id: 'k1', rpm: 100_000, concurrency: 100 }] } },
  pipelines: {
    photography: {
      steps: [
        { name: 'generate', provider: 'main', batchSize: 5 },
        { name: 'store', concurrency: 5 },
      ],
    },
  },
};

describe('capacity runs: the planner against the live configuration', () => {
  const t = useAuthApp('pglite', handConfig);

  it('matches the hand-derived figures of waves of one-second calls', async () => {
    const run = await runToEnd(t, {
      scenario: TWELVE_CALLS,
      sweep: 'concurrency=1..4',
      target: 'p95_completion=5s',
    });
    assert.equal(run.state, 'succeeded', JSON.stringify(run.error));
    assert.deepEqual(run.sweep, { name: 'concurrency', values: [1, 2, 3, 4] });
    assert.deepEqual(run.progress, { done: 4, total: 4 });
    for (const row of run.rows) {
      const c = row.value;
      const o = row.report.overall;
      assert.equal(o.succeeded, 12);
      assert.equal(o.completion.max, Math.ceil(12 / c), `max completion at c=${c}`);
      assert.equal(o.completion.p50, Math.ceil(6 / c), `p50 completion at c=${c}`);
      assert.equal(o.completion.p95, Math.ceil(12 / c), `p95 completion at c=${c}`);
      assert.equal(row.report.throughput.tasksPerMin, (12 * 60) / Math.ceil(12 / c));
      assert.deepEqual(row.targets, [{ target: 'p95_completion=5s', value: Math.ceil(12 / c) }]);
      assert.equal(row.meets, Math.ceil(12 / c) <= 5);
    }
    assert.equal(run.best, 3);
    assert.equal(run.error, null);
  });

  it('names the bad field of a request the planner would refuse', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ scenario: { arrivals: [] }, sweep: 'keys=1..2' }, /scenario\.arrivals: /],
      [
        {
          scenario: { ...TWELVE_CALLS, latency: { generate: { dist: 'normal', meanMs: 5 } } },
          sweep: 'keys=1..2',
        },
        /scenario\.latency\.generate/,
      ],
      [
        { scenario: 'no-such-scenario', sweep: 'keys=1..2' },
        /scenario: no shipped scenario "no-such-scenario"/,
      ],
      [{ scenario: TWELVE_CALLS, sweep: 'keys=1..50' }, /sweep: 50 values; a capacity run takes at most 12/],
      [{ scenario: TWELVE_CALLS, sweep: 'keys' }, /sweep: /],
      [{ scenario: TWELVE_CALLS, sweep: 'workers=0..2' }, /sweep: workers must be a positive integer/],
      [{ scenario: TWELVE_CALLS, sweep: 'concurrency:nope=1..2' }, /sweep: .*unknown provider "nope"/],
      [{ scenario: TWELVE_CALLS, sweep: 'keys=1..2', target: 'p96_wait=3s' }, /target: /],
      [{ scenario: TWELVE_CALLS, sweep: 'keys=1..2', set: { 'limits.nope': 3 } }, /set\.limits\.nope: /],
      [
        {
          scenario: { ...TWELVE_CALLS, arrivals: [{ burst: { users: 2, plan: 'gold' } }] },
          sweep: 'keys=1..2',
        },
        /scenario: arrivals\[0\]: unknown plan "gold"/,
      ],
      [
        { scenario: { ...TWELVE_CALLS, config: { limits: { maxRunningTasks: 3 } } }, sweep: 'keys=1..2' },
        /scenario\.config: /,
      ],
      [
        {
          scenario: { arrivals: [{ poisson: { perMinute: 10_000, forSeconds: 3600 } }] },
          sweep: 'keys=1..2',
        },
        /scenario\.arrivals: about 600000 submissions/,
      ],
      [{ sweep: 'keys=1..2' }, /scenario: /],
      [{ scenario: TWELVE_CALLS, sweep: 'keys=1..2', extra: 1 }, /extra/],
    ];
    for (const [body, message] of cases) {
      const res = await post(t, body);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body)} → ${res.body}`);
      const error = res.json<{ error: { code: string; message: string } }>().error;
      assert.equal(error.code, 'validation_failed');
      assert.match(error.message, message, JSON.stringify(body));
    }
  });

  it('is described in /openapi.json with the body schema it validates', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    type Op = {
      'x-darkroom-scope': string;
      requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown> } }> };
    };
    const paths = res.json<{ paths: Record<string, Record<string, Op>> }>().paths;
    const start = paths['/v1/admin/capacity/runs']!.post!;
    assert.equal(start['x-darkroom-scope'], 'admin');
    const props = start.requestBody!.content['application/json']!.schema.properties;
    assert.deepEqual(Object.keys(props).sort(), ['scenario', 'seed', 'set', 'sweep', 'target']);
    for (const p of ['/v1/admin/capacity/runs/{id}', '/v1/admin/capacity/scenarios'])
      assert.equal(paths[p]!.get!['x-darkroom-scope'], 'admin', p);
  });

  it('is for admin keys only', async () => {
    const body = { scenario: TWELVE_CALLS, sweep: 'keys=1..2' };
    assert.equal((await post(t, body, t.appKey)).statusCode, 403);
    const anonymous = await t.app.inject({ method: 'POST', url: '/v1/admin/capacity/runs', payload: body });
    assert.equal(anonymous.statusCode, 401);
    const list = await t.app.inject({
      method: 'GET',
      url: '/v1/admin/capacity/scenarios',
      headers: bearer(t.appKey),
    });
    assert.equal(list.statusCode, 403);
  });

  it('lists the shipped scenarios and answers 404 for an unknown run', async () => {
    const res = await t.app.inject({
      method: 'GET',
      url: '/v1/admin/capacity/scenarios',
      headers: bearer(t.adminKey),
    });
    assert.equal(res.statusCode, 200);
    const scenarios = res.json<{ scenarios: Array<{ name: string; problem: string | null }> }>().scenarios;
    const names = scenarios.map((s) => s.name);
    assert.ok(!names.some((n) => n.startsWith('config-')), names.join());
    const problem = (name: string) => scenarios.find((s) => s.name === name)?.problem;
    // This server has the plans free/start/pro and the task type photography.
    assert.equal(problem('02-ten-pro-at-once'), null);
    assert.match(problem('01-sixty-users') ?? '', /unknown plan "portrait"/);
    assert.match(problem('03-kiosks') ?? '', /unknown (plan "kiosk"|task type "kiosk")/);
    // The page's list agrees with what POST accepts.
    const refused = await post(t, { scenario: '01-sixty-users', sweep: 'keys=1..2' });
    assert.equal(refused.statusCode, 400);
    assert.match(refused.json<{ error: { message: string } }>().error.message, /unknown plan "portrait"/);
    const missing = await t.app.inject({
      method: 'GET',
      url: '/v1/admin/capacity/runs/cap_00000000-0000-0000-0000-000000000000',
      headers: bearer(t.adminKey),
    });
    assert.equal(missing.statusCode, 404);
  });
});

/**
 * The same shipped scenario and sweep through `darkroom plan --json` (a separate process that
 * reads the config from a file) and through the API (the server's resolved config): every
 * figure of every report is the same; only the config's source name differs.
 */
describe('capacity runs agree with darkroom plan', () => {
  const overrides = { limits: { maxRunningTasks: 8 } };
  const t = useAuthApp('pglite', overrides);

  it('gives the CLI planner figures for 02-ten-pro-at-once, sweeping concurrency', async () => {
    const file = path.join(tempDir(), 'darkroom.json');
    writeFileSync(file, JSON.stringify(testConfigInput(overrides)));
    const args = [
      path.join(ROOT, 'bin', 'darkroom.cjs'),
      'plan',
      '-c',
      file,
      '-s',
      path.join(ROOT, 'scenarios', '02-ten-pro-at-once.yaml'),
      '--sweep',
      'concurrency=2,3,5',
      '--target',
      'p95_completion=5m',
      '--json',
    ];
    const cli = promisify(execFile)(process.execPath, args, { cwd: ROOT, maxBuffer: 64 << 20 }).catch(
      (error: { stdout?: string; code?: number }) => {
        // Exit code 1 means no value met the target; the JSON is still complete.
        if (error.code === 1 && error.stdout) return { stdout: error.stdout };
        throw error;
      },
    );
    const api = await runToEnd(t, {
      scenario: '02-ten-pro-at-once',
      sweep: 'concurrency=2,3,5',
      target: 'p95_completion=5m',
    });
    const expected = JSON.parse((await cli).stdout) as {
      best: number | null;
      rows: Array<{ value: number; meets: boolean | null; report: PlanReport }>;
    };
    assert.equal(api.state, 'succeeded', JSON.stringify(api.error));
    assert.equal(api.best, expected.best);
    assert.equal(api.rows.length, expected.rows.length);
    const withoutSource = (r: PlanReport) => ({ ...r, config: undefined });
    for (const [i, row] of api.rows.entries()) {
      const want = expected.rows[i]!;
      assert.equal(row.value, want.value);
      assert.equal(row.meets, want.meets);
      assert.deepEqual(withoutSource(row.report), withoutSource(want.report), `report for ${row.value}`);
    }
    // The figures themselves are not all equal across values (the sweep changed something).
    assert.notEqual(api.rows[0]!.report.overall.completion.p95, api.rows[2]!.report.overall.completion.p95);
  });

  it('keeps serving while a long run goes on in its thread, and refuses a second run', async () => {
    const res = await post(t, { scenario: '02-five-pro-per-minute', sweep: 'concurrency=5..9' });
    assert.equal(res.statusCode, 202, res.body);
    const { id } = res.json<CapacityRunView>();
    // If the simulation ran on the event loop, POST would answer only after it ended.
    for (let i = 0; i < 3; i++) {
      const health = await t.app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(health.statusCode, 200);
      const busy = await post(t, { scenario: TWELVE_CALLS, sweep: 'keys=1..2' });
      assert.equal(busy.statusCode, 409, busy.body);
      assert.equal(busy.json<{ error: { code: string } }>().error.code, 'planner_busy');
      assert.match(busy.json<{ error: { message: string } }>().error.message, new RegExp(id));
    }
    const run = await read(t, id);
    assert.equal(run.state, 'running', 'the run is still going after /healthz answered');
    assert.ok(run.progress.done < run.progress.total);
    // Rows land as each value's run ends, while the server keeps answering.
    const partial = await waitFor(
      'the first row',
      async () => {
        const health = await t.app.inject({ method: 'GET', url: '/healthz' });
        assert.equal(health.statusCode, 200);
        const r = await read(t, id);
        return r.rows.length > 0 && r;
      },
      LONG,
    );
    assert.equal(partial.rows[0]!.value, 5);
    const list = await t.app.inject({
      method: 'GET',
      url: '/v1/admin/capacity/runs',
      headers: bearer(t.adminKey),
    });
    assert.equal(list.json<{ runs: Array<{ id: string }> }>().runs[0]!.id, id);
  });
});

describe('capacity run budget', () => {
  it('stops a run over its wall-time budget with plan_timeout, and frees the planner', async () => {
    const config = testConfig();
    const job = await prepareJob(config, { scenario: '02-five-pro-per-minute', sweep: 'concurrency=5..9' });
    // 1 ms: the thread cannot even have started its first value when the budget runs out.
    const runner = createCapacityRunner({ budgetMs: 1 });
    try {
      const started = runner.start(job);
      const run = await runner.settled(started.id);
      assert.equal(run?.state, 'failed');
      assert.equal(run?.error?.code, 'plan_timeout');
      assert.ok(run!.rows.length < 5);
      const small = await prepareJob(config, { scenario: TWELVE_CALLS, sweep: 'keys=1' });
      const next = createCapacityRunner();
      const done = await next.settled(next.start(small).id);
      assert.equal(done?.state, 'succeeded', JSON.stringify(done?.error));
      await next.close();
      // The timed-out runner takes a new run once the old one ended.
      assert.equal(runner.start(small).state, 'running');
    } finally {
      await runner.close();
    }
  });
});
