/**
 * darkroom's OpenAI adapter against the strict simulator, for the cases openai-sdk.test.ts runs
 * through the official client: the adapter must get the real answer where the SDK does, and turn
 * every refusal the API documents into the right outcome.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import type { FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import type { ProviderOutcome } from '../../src/providers/types.ts';
import { call, darkroomAdapter, photo, SECRET, startOpenAISimulator } from './openai-fixtures.ts';

function images(outcome: ProviderOutcome): Array<{ data: Buffer; mime: string }> {
  assert.equal(outcome.kind, 'success', outcome.kind === 'success' ? '' : outcome.message);
  return outcome.kind === 'success' ? outcome.images : [];
}

function permanent(outcome: ProviderOutcome): string | undefined {
  assert.equal(outcome.kind, 'permanent', JSON.stringify(outcome));
  return outcome.kind === 'permanent' ? outcome.reason : undefined;
}

describe('contract: darkroom’s OpenAI adapter against the simulator', () => {
  let sim: FakeProviderHandle;
  before(async () => {
    sim = await startOpenAISimulator();
  });
  after(() => sim.close());

  it('gets a batch of count images from one request', async () => {
    const before = sim.stats().providers.oa?.keys['oa-key']?.requests ?? 0;
    const result = images(await darkroomAdapter(sim, 'gpt-image-2').call(call({ count: 3 })));
    assert.equal(result.length, 3);
    for (const image of result) {
      const metadata = await sharp(image.data).metadata();
      assert.deepEqual([image.mime, metadata.width, metadata.height], ['image/png', 1024, 1024]);
    }
    assert.equal((sim.stats().providers.oa?.keys['oa-key']?.requests ?? 0) - before, 1);
  });

  it('accepts every output_format a GPT image model returns, svg and animated gif included', async () => {
    const adapter = darkroomAdapter(sim, 'gpt-image-2');
    for (const [format, mime] of [
      ['png', 'image/png'],
      ['jpeg', 'image/jpeg'],
      ['webp', 'image/webp'],
      ['gif', 'image/gif'],
      ['svg', 'image/svg+xml'],
    ] as const) {
      const [image] = images(await adapter.call(call({ params: { output_format: format } })));
      assert.equal(image?.mime, mime, format);
      const metadata = await sharp(image?.data, { animated: true }).metadata();
      assert.equal(metadata.format, format === 'jpeg' ? 'jpeg' : format);
      if (format === 'gif') assert.equal(metadata.pages, 9);
    }
  });

  it('passes size and quality through, and reports a size the model refuses as permanent', async () => {
    const [wide] = images(
      await darkroomAdapter(sim, 'gpt-image-2').call(call({ params: { size: '1536x864', quality: 'low' } })),
    );
    const metadata = await sharp(wide?.data).metadata();
    assert.deepEqual([metadata.width, metadata.height], [1536, 864]);
    assert.equal(
      permanent(await darkroomAdapter(sim, 'gpt-image-1.5').call(call({ params: { size: '1536x864' } }))),
      'invalid_value',
    );
  });

  it('never sends response_format or style to a GPT image model, even when a task asks for them', async () => {
    for (const model of ['gpt-image-1.5', 'gpt-image-2', 'gpt-image-1-mini']) {
      const outcome = await darkroomAdapter(sim, model).call(
        call({ params: { response_format: 'url', style: 'vivid' } }),
      );
      assert.equal(images(outcome).length, 1, model);
    }
  });

  it('reports n above the model bound and a shut-down model as permanent, with the API code', async () => {
    assert.equal(
      permanent(await darkroomAdapter(sim, 'gpt-image-2').call(call({ count: 11 }))),
      'integer_above_max_value',
    );
    for (const model of ['gpt-image-1', 'dall-e-3', 'gpt-image-9'])
      assert.equal(permanent(await darkroomAdapter(sim, model).call(call())), 'model_not_found', model);
  });

  it('takes no retry delay from x-ratelimit-reset-* on a 5xx: only retry-after(-ms) is a retry instruction', async () => {
    // The SDK's retryRequest (openai-node src/client.ts) reads retry-after-ms and retry-after only;
    // x-ratelimit-reset-requests says when the requests limit refills, and comes on every answer.
    const script = (faults: string[]) =>
      fetch(`${sim.url}/_sim/faults`, {
        method: 'POST',
        body: JSON.stringify({ provider: 'oa', faults }),
      });
    await script(['http500']);
    const raw = await fetch(`${sim.url}/p/oa/v1/images/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-image-2', prompt: 'x' }),
    });
    assert.equal(raw.status, 500);
    assert.match(raw.headers.get('x-ratelimit-reset-requests') ?? '', /\d(ms|s)$/);
    assert.equal(raw.headers.get('retry-after'), null);
    await raw.arrayBuffer();
    for (const fault of ['http500', 'http503']) {
      await script([fault]);
      const outcome = await darkroomAdapter(sim, 'gpt-image-2').call(call());
      assert.equal(outcome.kind, 'transient', fault);
      assert.equal(outcome.kind === 'transient' ? outcome.retryAfterMs : -1, undefined, fault);
    }
  });

  it('edits one input as `image` and several as `image[]`', async () => {
    const adapter = darkroomAdapter(sim, 'gpt-image-2');
    const person = { data: await photo('#0a0'), mime: 'image/png', role: 'person' };
    const garment = { data: await photo('#a00'), mime: 'image/png', role: 'garment' };
    assert.equal(images(await adapter.call(call({ inputs: [person] }))).length, 1);
    const both = images(
      await adapter.call(call({ count: 2, inputs: [person, garment], params: { output_format: 'webp' } })),
    );
    assert.deepEqual(
      both.map((image) => image.mime),
      ['image/webp', 'image/webp'],
    );
  });
});
