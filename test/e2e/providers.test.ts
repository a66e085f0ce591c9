import assert from 'node:assert/strict';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { resolveConfig } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfigInput } from '../helpers/config.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const WORKFLOW = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'examples',
  'comfyui',
  'txt2img.json',
);
const GEMINI_SECRET = 'AIzaSy-test-secret-7f3a91c2';
const OPENAI_SECRET = 'sk-test-secret-0c8e55d1a2';

/**
 * The real adapters inside the real server: a task per provider type runs through the
 * pipeline against the provider simulator over HTTP, and no secret shows up anywhere.
 */
describe('real provider adapters in the pipeline', () => {
  let fake: FakeProviderHandle;
  let server: RunningServer;
  const logs: string[] = [];

  before(async () => {
    fake = await startFakeProvider({
      providers: [
        {
          name: 'gem',
          keys: [{ id: 'g1', secret: GEMINI_SECRET, rpm: 600, concurrency: 4 }],
          latencyMs: 10,
          jitterMs: 2,
          errorRate: 0,
        },
        {
          name: 'oai',
          keys: [{ id: 'o1', secret: OPENAI_SECRET, rpm: 600, concurrency: 4 }],
          latencyMs: 10,
          jitterMs: 2,
          errorRate: 0,
        },
        {
          name: 'comfy',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 2 }],
          latencyMs: 200,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
    const generateWith = (provider: string) => ({
      steps: [
        { name: 'generate', provider, batchSize: 2 },
        { name: 'store', concurrency: 4 },
      ],
    });
    const input = testConfigInput({
      providers: {
        gemini: {
          type: 'gemini',
          model: 'gemini-2.5-flash-image',
          baseUrl: `${fake.url}/p/gem`,
          keys: [{ id: 'g1', secret: 'env:TEST_GEMINI_KEY' }],
        },
        openai: {
          type: 'openai',
          model: 'gpt-image-2',
          baseUrl: `${fake.url}/p/oai`,
          keys: [{ id: 'o1', secret: 'env:TEST_OPENAI_KEY' }],
        },
        comfy: {
          type: 'comfyui',
          baseUrl: `${fake.url}/p/comfy`,
          workflow: WORKFLOW,
          keys: [{ id: 'gpu', rpm: 1000, concurrency: 2 }],
        },
      },
      pipelines: { gem: generateWith('gemini'), oai: generateWith('openai'), comfy: generateWith('comfy') },
      worker: { maxAttempts: 2 },
      server: { logLevel: 'debug' },
    });
    delete (input.providers as Record<string, unknown>).main;
    input.pipelines = {
      gem: generateWith('gemini'),
      oai: generateWith('openai'),
      comfy: generateWith('comfy'),
    };
    const config = resolveConfig(
      input,
      { TEST_GEMINI_KEY: GEMINI_SECRET, TEST_OPENAI_KEY: OPENAI_SECRET },
      'test',
    );
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(chunk.toString());
        done();
      },
    });
    server = await startServer(config, { log: pino({ level: 'debug' }, sink) });
  });
  after(async () => {
    await server?.stop();
    await fake?.close();
  });

  it('runs a task on Gemini, an OpenAI-compatible API and ComfyUI, with ComfyUI progress on SSE', async () => {
    const base = server.url!;
    const ids: Record<string, string> = {};
    for (const type of ['gem', 'oai', 'comfy']) {
      const r = await postJson(base, '/v1/tasks', {
        user_id: `p-${type}`,
        type,
        plan: 'free',
        prompt: 'a lighthouse',
      });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      ids[type] = r.body.id as string;
    }
    const sse = await (await fetch(`${base}/v1/tasks/${ids.comfy!}/events`)).text();
    assert.match(sse, /event: step_progress/, 'ComfyUI sampler progress reached the SSE stream');
    for (const [type, id] of Object.entries(ids)) {
      const task = await waitFor(`the ${type} task`, async () => {
        const r = await getJson(base, `/v1/tasks/${id}`);
        return ['queued', 'running'].includes(r.body.state as string) ? undefined : r.body;
      });
      assert.equal(task.state, 'succeeded', `${type}: ${JSON.stringify(task)}`);
      assert.equal((task.images as unknown[]).length, 2);
    }
  });

  it('keeps secrets out of logs, errors, events and API responses when calls fail', async () => {
    const base = server.url!;
    for (const [provider, key] of [
      ['gem', 'g1'],
      ['oai', 'o1'],
    ] as const) {
      await fetch(`${fake.url}/_sim/faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ provider, key, faults: ['http500', 'refusal', 'http500', 'http500'] }),
      });
    }
    const ids: string[] = [];
    for (const type of ['gem', 'oai']) {
      const r = await postJson(base, '/v1/tasks', { user_id: `f-${type}`, type, plan: 'free', prompt: 'x' });
      ids.push(r.body.id as string);
    }
    const views = await Promise.all(
      ids.map((id) =>
        waitFor('a failing task to end', async () => {
          const r = await getJson(base, `/v1/tasks/${id}`);
          return ['queued', 'running'].includes(r.body.state as string) ? undefined : r.body;
        }),
      ),
    );
    assert.ok(
      views.some((v) => v.state !== 'succeeded'),
      'the faults made something fail',
    );
    const { db } = server.ctx;
    const stored = await db.query(`SELECT
        (SELECT coalesce(string_agg(coalesce(error, ''), ' '), '') FROM jobs) AS jobs,
        (SELECT coalesce(string_agg(coalesce(error, ''), ' '), '') FROM tasks) AS tasks,
        (SELECT coalesce(string_agg(data::text, ' '), '') FROM events) AS events`);
    const everything = [JSON.stringify(views), JSON.stringify(stored.rows), logs.join('')].join('\n');
    assert.ok(everything.includes('500') || everything.includes('refus'), 'errors were recorded');
    for (const secret of [GEMINI_SECRET, OPENAI_SECRET])
      assert.ok(!everything.includes(secret), 'a secret leaked');
  });
});
