import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { simulate } from '../../src/sim/engine.ts';
import { parseScenario } from '../../src/sim/scenario.ts';
import { testConfigInput } from '../helpers/config.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const KEYS = [
  { id: 'g1', secret: 'AIzaSy-e2e-key-one-0001', rpm: 40, concurrency: 5 },
  { id: 'g2', secret: 'AIzaSy-e2e-key-two-0002', rpm: 40, concurrency: 5 },
];

/**
 * A Pro task of 70 images through the default pipelines (beautify 1 call → generate in batches
 * of 5 → store) on a Gemini provider, against the strict simulator that refuses candidateCount > 1
 * on image models as the real API does. Each batch must become 5 requests, and the scheduler must
 * count them: 2 keys of rpm 40 and concurrency 5 hold the 71 requests only if every request
 * counts (14 batches counted as 14 requests would put 25 requests in flight on a key).
 */
describe('a Pro task of 70 images on Gemini', () => {
  let fake: FakeProviderHandle;
  let server: RunningServer;
  let config: Config;

  before(async () => {
    fake = await startFakeProvider({
      imageSize: 32,
      providers: [{ name: 'gem', keys: KEYS, latencyMs: 15, jitterMs: 5, errorRate: 0 }],
    });
    const input = testConfigInput();
    input.providers = {
      main: {
        type: 'gemini',
        model: 'gemini-2.5-flash-image',
        baseUrl: `${fake.url}/p/gem`,
        concurrency: 10,
        keys: KEYS.map((k) => ({
          id: k.id,
          rpm: k.rpm,
          concurrency: k.concurrency,
          secret: `env:KEY_${k.id}`,
        })),
      },
    };
    delete input.pipelines; // the default pipelines
    config = resolveConfig(input, Object.fromEntries(KEYS.map((k) => [`KEY_${k.id}`, k.secret])), 'test');
    server = await startServer(config);
  });
  after(async () => {
    await server?.stop();
    await fake?.close();
  });

  it('succeeds with 70 + 1 requests at the provider and no key over its limits; the planner counts the same', async () => {
    const base = server.url!;
    const r = await postJson(base, '/v1/tasks', {
      user_id: 'pro-user',
      type: 'photography',
      plan: 'pro',
      prompt: 'a fox',
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const task = await waitFor(
      'the Pro task to end',
      async () => {
        const t = await getJson(base, `/v1/tasks/${r.body.id as string}`);
        return ['queued', 'running'].includes(t.body.state as string) ? undefined : t.body;
      },
      { timeoutMs: 120_000 },
    );
    assert.equal(task.state, 'succeeded', JSON.stringify(task));
    assert.equal((task.images as unknown[]).length, 70);

    const keys = fake.stats().providers.gem!.keys;
    const requests = Object.values(keys).reduce((n, k) => n + k.requests, 0);
    assert.equal(requests, 71, `requests per key: ${JSON.stringify(keys)}`);
    for (const k of KEYS) {
      const s = keys[k.id]!;
      assert.equal(s.rejected_429, 0, `${k.id} was never refused`);
      assert.ok(s.max_in_flight <= k.concurrency, `${k.id}: ${s.max_in_flight} in flight > ${k.concurrency}`);
      assert.ok(s.max_requests_in_any_60s_window <= k.rpm, `${k.id}: over rpm`);
    }

    // The planner, fed the same configuration, counts the same requests for the same task.
    const run = simulate(
      config,
      parseScenario({ arrivals: [{ burst: { users: 1, plan: 'pro', type: 'photography' } }] }),
    );
    assert.equal(run.tasks[0]?.state, 'succeeded');
    const planned = run.providers.find((p) => p.name === 'main')!;
    assert.equal(planned.requests, 71);
    assert.equal(planned.calls, 15, '1 beautify call + 14 batches of 5');
    assert.equal(
      planned.keys.reduce((n, k) => n + k.requests, 0),
      71,
    );
  });
});
