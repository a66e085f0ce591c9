/**
 * Every output_format a GPT image model returns (SDK 7.57 `output_format: png | webp | jpeg | gif | svg`)
 * goes through the whole pipeline: the adapter accepts it, the store step keeps the original in its
 * own format with a WebP thumbnail, and the signed link serves it with its own content type (an SVG
 * under a policy that runs nothing).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { resolveConfig } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfigInput } from '../helpers/config.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const FORMATS = [
  ['webp', 'image/webp'],
  ['gif', 'image/gif'],
  ['svg', 'image/svg+xml'],
] as const;

describe('OpenAI output formats through the pipeline', () => {
  let fake: FakeProviderHandle;
  let server: RunningServer;

  before(async () => {
    fake = await startFakeProvider({
      providers: [
        {
          name: 'oai',
          keys: [{ id: 'o1', secret: 'sk-formats-test', rpm: 1000, concurrency: 8 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
    const input = testConfigInput({});
    input.providers = Object.fromEntries(
      FORMATS.map(([format]) => [
        format,
        {
          type: 'openai',
          model: 'gpt-image-2',
          baseUrl: `${fake.url}/p/oai`,
          keys: [{ id: 'o1', secret: 'env:TEST_OPENAI_KEY' }],
          // svg: "SVG output requires n=1", so one image per request
          params: { output_format: format, ...(format === 'gif' ? { frame_count: 3 } : {}) },
        },
      ]),
    );
    input.pipelines = Object.fromEntries(
      FORMATS.map(([format]) => [
        format,
        {
          steps: [
            // svg: a batch of 2 is split into 2 requests of n = 1 (capabilities.ts, fan-out.ts)
            { name: 'generate', provider: format, batchSize: 2 },
            { name: 'store', concurrency: 4 },
          ],
        },
      ]),
    );
    const config = resolveConfig(input, { TEST_OPENAI_KEY: 'sk-formats-test' }, 'test');
    server = await startServer(config);
  });
  after(async () => {
    await server?.stop();
    await fake?.close();
  });

  it('stores and serves webp, animated gif and svg results in their own format', async () => {
    const base = server.url!;
    for (const [format, mime] of FORMATS) {
      const submitted = await postJson(base, '/v1/tasks', {
        user_id: `u-${format}`,
        type: format,
        plan: 'free',
        prompt: 'a lighthouse',
      });
      assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
      const task = await waitFor(
        `the ${format} task`,
        async () => {
          const r = await getJson(base, `/v1/tasks/${submitted.body.id as string}`);
          return ['queued', 'running'].includes(r.body.state as string) ? undefined : r.body;
        },
        { timeoutMs: 120_000 }, // 1024² renders and GIF encodes on a loaded machine
      );
      assert.equal(task.state, 'succeeded', `${format}: ${JSON.stringify(task)}`);
      const images = task.images as Array<{ url: string; thumbnail_url: string; width: number }>;
      assert.equal(images.length, 2);
      for (const image of images) {
        assert.match(new URL(image.url).pathname, new RegExp(`\\.${format}$`));
        const original = await fetch(image.url);
        assert.equal(original.headers.get('content-type'), mime);
        const bytes = Buffer.from(await original.arrayBuffer());
        const metadata = await sharp(bytes, { animated: true }).metadata();
        assert.equal(metadata.format, format);
        if (format === 'gif') assert.equal(metadata.pages, 3);
        if (format === 'svg')
          assert.match(original.headers.get('content-security-policy') ?? '', /default-src 'none'.*sandbox/);
        const thumbnail = await fetch(image.thumbnail_url);
        assert.equal(thumbnail.headers.get('content-type'), 'image/webp');
      }
    }
    // webp and gif: one request of n = 2 each; svg: two requests of n = 1
    assert.equal(fake.stats().providers.oai?.keys.o1?.requests, 4);
  });
});
