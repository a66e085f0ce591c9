/**
 * The official `openai` Node client (devDependency, 7.x) against the strict simulator, for every
 * operation darkroom uses: images.generate and images.edit (multipart, one image or several).
 * Each case asserts what the real API does, with the place it is documented; the same cases run
 * through darkroom's own adapter in openai-adapter.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import sharp from 'sharp';
import type { FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { photo, sdkClient, startOpenAISimulator } from './openai-fixtures.ts';

async function rejection(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof OpenAI.APIError, `expected an APIError, got ${String(error)}`);
    return error;
  }
  assert.fail('the request succeeded');
}

function bytesOf(response: OpenAI.ImagesResponse, index = 0): Buffer {
  const b64 = response.data?.[index]?.b64_json;
  assert.ok(b64, 'GPT image models answer b64_json');
  return Buffer.from(b64, 'base64');
}

describe('contract: the official openai client against the simulator', () => {
  let sim: FakeProviderHandle;
  let client: OpenAI;
  before(async () => {
    sim = await startOpenAISimulator();
    client = sdkClient(sim);
  });
  after(() => sim.close());

  it('generates n images in one request, base64 PNG, with the documented response fields', async () => {
    const response = await client.images.generate({ model: 'gpt-image-2', prompt: 'a lighthouse', n: 3 });
    assert.equal(response.data?.length, 3);
    for (let i = 0; i < 3; i += 1) {
      const metadata = await sharp(bytesOf(response, i)).metadata();
      // size defaults to auto; the simulator's auto is 1024x1024
      assert.deepEqual([metadata.format, metadata.width, metadata.height], ['png', 1024, 1024]);
      // Image.revised_prompt: "Not returned by GPT image models"; Image.url: "Unsupported for GPT image models"
      assert.equal(response.data?.[i]?.revised_prompt, undefined);
      assert.equal(response.data?.[i]?.url, undefined);
    }
    // ImagesResponse: output_format, quality, size, background and usage for GPT image models
    assert.equal(response.output_format, 'png');
    assert.equal(response.size, '1024x1024');
    assert.ok(response.quality && ['low', 'medium', 'high'].includes(response.quality));
    assert.equal(response.background, 'opaque');
    const usage = response.usage;
    assert.ok(usage);
    assert.equal(usage.total_tokens, usage.input_tokens + usage.output_tokens);
    assert.equal(
      usage.input_tokens,
      usage.input_tokens_details.image_tokens + usage.input_tokens_details.text_tokens,
    );
    assert.ok(usage.output_tokens > 0);
  });

  it('answers in the requested output_format: png, jpeg, webp, gif and svg', async () => {
    for (const format of ['jpeg', 'webp'] as const) {
      const response = await client.images.generate({
        model: 'gpt-image-1.5',
        prompt: 'a lighthouse',
        output_format: format,
        size: '1024x1536',
      });
      assert.equal(response.output_format, format);
      const metadata = await sharp(bytesOf(response)).metadata();
      assert.deepEqual([metadata.format, metadata.width, metadata.height], [format, 1024, 1536]);
    }
    // frame_count: "Accepts integers from 2 through 16. Defaults to 9 when omitted."
    const gif = await client.images.generate({
      model: 'gpt-image-2',
      prompt: 'a flag',
      output_format: 'gif',
    });
    assert.equal(gif.output_format, 'gif');
    const gifMeta = await sharp(bytesOf(gif), { animated: true }).metadata();
    assert.deepEqual([gifMeta.format, gifMeta.pages], ['gif', 9]);
    const four = await client.images.generate({
      model: 'gpt-image-2',
      prompt: 'a flag',
      output_format: 'gif',
      frame_count: 4,
    });
    assert.equal((await sharp(bytesOf(four), { animated: true }).metadata()).pages, 4);
    const svg = await client.images.generate({
      model: 'gpt-image-2',
      prompt: 'a logo',
      output_format: 'svg',
    });
    assert.equal(svg.output_format, 'svg');
    assert.match(bytesOf(svg).toString('utf8'), /^<svg[\s>]/);
    assert.equal((await sharp(bytesOf(svg)).metadata()).format, 'svg');
  });

  it('honours the sizes and qualities each model documents, and refuses the others with 400 invalid_value', async () => {
    // ImageGenerateParams.size: arbitrary WIDTHxHEIGHT for gpt-image-2 and the 2.5 family, e.g. 1536x864
    const wide = await client.images.generate({ model: 'gpt-image-2', prompt: 'a field', size: '1536x864' });
    assert.equal(wide.size, '1536x864');
    assert.deepEqual(
      [(await sharp(bytesOf(wide)).metadata()).width, (await sharp(bytesOf(wide)).metadata()).height],
      [1536, 864],
    );
    const notStandard = await rejection(
      client.images.generate({ model: 'gpt-image-1.5', prompt: 'a field', size: '1536x864' }),
    );
    assert.deepEqual(
      [notStandard.status, notStandard.code, notStandard.param],
      [400, 'invalid_value', 'size'],
    );
    // quality: "gpt-image-2.5-sunburst and gpt-image-2.5-flare … also support xhigh and max"
    const xhigh = await client.images.generate({
      model: 'gpt-image-2.5-flare',
      prompt: 'a field',
      quality: 'xhigh',
    });
    assert.equal(xhigh.quality, 'xhigh');
    const noXhigh = await rejection(
      client.images.generate({ model: 'gpt-image-2', prompt: 'a field', quality: 'xhigh' }),
    );
    assert.deepEqual([noXhigh.status, noXhigh.code, noXhigh.param], [400, 'invalid_value', 'quality']);
  });

  it('refuses response_format on GPT image models with 400 unknown_parameter', async () => {
    // response_format: "Unsupported for GPT image models, which always return base64-encoded images";
    // the API's answer as reported in github.com/vercel/ai/issues/6102
    for (const model of ['gpt-image-1.5', 'gpt-image-2', 'gpt-image-1-mini']) {
      const error = await rejection(
        client.images.generate({ model, prompt: 'x', response_format: 'b64_json' }),
      );
      assert.ok(error instanceof OpenAI.BadRequestError);
      assert.deepEqual(
        [error.status, error.type, error.code, error.param],
        [400, 'invalid_request_error', 'unknown_parameter', 'response_format'],
      );
      assert.equal(error.message, "400 Unknown parameter: 'response_format'.");
    }
  });

  it('refuses n above the model bound, and n > 1 with svg output', async () => {
    // n: "Must be between 1 and 10"
    const tooMany = await rejection(client.images.generate({ model: 'gpt-image-2', prompt: 'x', n: 11 }));
    assert.deepEqual([tooMany.status, tooMany.code, tooMany.param], [400, 'integer_above_max_value', 'n']);
    const none = await rejection(client.images.generate({ model: 'gpt-image-2', prompt: 'x', n: 0 }));
    assert.deepEqual([none.status, none.code], [400, 'integer_below_min_value']);
    // svg: "SVG generation requires n=1"
    const svgBatch = await rejection(
      client.images.generate({ model: 'gpt-image-2', prompt: 'x', n: 2, output_format: 'svg' }),
    );
    assert.deepEqual([svgBatch.status, svgBatch.param], [400, 'n']);
  });

  it('answers 404 model_not_found for shut-down, retired and unknown models', async () => {
    // ImageModel: gpt-image-1 "was shut down on October 23, 2026"; dall-e-2/3 "retired on May 12, 2026"
    for (const model of ['gpt-image-1', 'dall-e-2', 'dall-e-3', 'gpt-image-9']) {
      const error = await rejection(client.images.generate({ model, prompt: 'x' }));
      assert.ok(error instanceof OpenAI.NotFoundError);
      assert.deepEqual(
        [error.status, error.code, error.type],
        [404, 'model_not_found', 'invalid_request_error'],
      );
      assert.equal(
        error.message,
        `404 The model \`${model}\` does not exist or you do not have access to it.`,
      );
    }
    // No model: the legacy default was dall-e-2, which is retired.
    const unnamed = await rejection(client.images.generate({ prompt: 'x' }));
    assert.equal(unnamed.status, 404);
  });

  it('edits one image sent as `image` and several sent as `image[]`', async () => {
    const one = await client.images.edit({
      model: 'gpt-image-1.5',
      prompt: 'make it night',
      image: await toFile(await photo('#0a0'), 'person.png', { type: 'image/png' }),
    });
    assert.equal((await sharp(bytesOf(one)).metadata()).format, 'png');
    const two = await client.images.edit({
      model: 'gpt-image-2',
      prompt: 'dress the person in the garment',
      n: 2,
      output_format: 'webp',
      image: [
        await toFile(await photo('#0a0'), 'person.png', { type: 'image/png' }),
        await toFile(await photo('#a00'), 'garment.png', { type: 'image/png' }),
      ],
    });
    assert.equal(two.data?.length, 2);
    assert.equal((await sharp(bytesOf(two, 1)).metadata()).format, 'webp');
    assert.ok((two.usage?.input_tokens_details.image_tokens ?? 0) > 0, 'input images count as image tokens');
    const legacy = await rejection(
      client.images.edit({
        model: 'gpt-image-2',
        prompt: 'x',
        response_format: 'url',
        image: await toFile(await photo('#00a'), 'a.png', { type: 'image/png' }),
      }),
    );
    assert.deepEqual([legacy.status, legacy.code], [400, 'unknown_parameter']);
  });

  it('takes input_fidelity where the SDK documents it', async () => {
    // "Supports high and low on gpt-image-1.5; gpt-image-1-mini supports only low. For gpt-image-2, omit this parameter."
    const edit = async (model: string, input_fidelity: 'high' | 'low') =>
      client.images.edit({
        model,
        prompt: 'keep the face',
        input_fidelity,
        image: await toFile(await photo('#0a0'), 'person.png', { type: 'image/png' }),
      });
    assert.equal((await edit('gpt-image-1.5', 'high')).data?.length, 1);
    assert.equal((await edit('gpt-image-1-mini', 'low')).data?.length, 1);
    for (const [model, fidelity] of [
      ['gpt-image-1-mini', 'high'],
      ['gpt-image-2', 'low'],
    ] as const) {
      const error = await rejection(edit(model, fidelity));
      assert.deepEqual([error.status, error.param], [400, 'input_fidelity'], model);
    }
  });
});
