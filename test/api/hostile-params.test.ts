/**
 * A submit's `params` (issue 9, items 10 and 11): they may never choose which images ComfyUI
 * loads, and only the names and bounds a provider allows reach it; the rest is a 400 naming
 * the field, with nothing stored or charged.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { checkTaskParams, DEFAULT_TASK_PARAMS } from '../../src/pipeline/params.ts';
import { createComfyUIProvider } from '../../src/providers/comfyui.ts';
import type { ProviderCall } from '../../src/providers/types.ts';
import { describeEachDb } from '../helpers/db.ts';
import { testConfig } from '../helpers/config.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { storedRows } from '../helpers/stored-rows.ts';
import { waitFor } from '../helpers/wait.ts';
import { useOneKeyProvider } from '../helpers/fake-provider.ts';

/** Two LoadImage nodes fed by darkroom's own placeholders. */
const TRY_ON = {
  '1': { class_type: 'LoadImage', inputs: { image: '{{input_person}}' } },
  '2': { class_type: 'LoadImage', inputs: { image: '{{input_image}}' } },
  '3': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd_xl_base_1.0.safetensors' } },
  '5': { class_type: 'EmptyLatentImage', inputs: { width: 32, height: 32, batch_size: '{{batch_size}}' } },
  '6': { class_type: 'CLIPTextEncode', inputs: { text: '{{prompt}}', clip: ['3', 1] } },
  '7': {
    class_type: 'KSampler',
    inputs: {
      seed: '{{seed}}',
      steps: 2,
      cfg: 7,
      sampler_name: 'euler',
      scheduler: 'normal',
      denoise: 1,
      model: ['3', 0],
      positive: ['6', 0],
      negative: ['6', 0],
      latent_image: ['5', 0],
    },
  },
  '8': { class_type: 'VAEDecode', inputs: { samples: ['7', 0], vae: ['3', 2] } },
  '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'darkroom', images: ['8', 0] } },
};

describe('comfyui placeholders against the simulator', () => {
  const sim = useOneKeyProvider({ name: 'comfy', keyId: 'gpu', rpm: 1000, concurrency: 2, latencyMs: 10 });

  it("a submit's params never replace darkroom's own input, prompt, seed or batch placeholders", async () => {
    const adapter = createComfyUIProvider({
      baseUrl: `${sim().url}/p/comfy`,
      workflow: TRY_ON,
      timeoutMs: 10_000,
      pollIntervalMs: 50,
    });
    const png = (colour: string) =>
      sharp({ create: { width: 16, height: 16, channels: 3, background: colour } })
        .png()
        .toBuffer();
    const call = (
      jobId: string,
      data: Buffer,
      params: Record<string, unknown>,
      refs: string[],
    ): ProviderCall => ({
      taskId: `task-${jobId}`,
      jobId,
      step: 'generate',
      prompt: 'a portrait',
      inputs: [{ data, mime: 'image/png', role: 'person' }],
      count: 1,
      seed: 11,
      firstIndex: 0,
      params,
      key: { id: 'gpu', secret: undefined },
      signal: new AbortController().signal,
      saveRemoteRef: async (ref) => {
        refs.push(ref);
      },
    });
    // Another user's job leaves its photo in ComfyUI's input folder under a name that is easy to guess.
    const victimRefs: string[] = [];
    const victim = await adapter.call(call('victim', await png('#a00'), {}, victimRefs));
    assert.equal(victim.kind, 'success', JSON.stringify(victim));
    const victimFile = 'darkroom-victim-1.png';

    const refs: string[] = [];
    const outcome = await adapter.call(
      call(
        'mallory',
        await png('#0a0'),
        {
          input_person: victimFile,
          input_image: victimFile,
          input_image_1: victimFile,
          prompt: 'x',
          seed: 1,
          batch_size: 9,
        },
        refs,
      ),
    );
    assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
    const promptId = refs.at(-1)!;
    const history = (await (await fetch(`${sim().url}/p/comfy/history/${promptId}`)).json()) as Record<
      string,
      { prompt: [number, string, typeof TRY_ON] }
    >;
    const sent = history[promptId]!.prompt[2];
    assert.equal(sent['1'].inputs.image, 'darkroom-mallory-1.png', 'input_person came from params');
    assert.equal(sent['2'].inputs.image, 'darkroom-mallory-1.png', 'input_image came from params');
    assert.equal(sent['6'].inputs.text, 'a portrait');
    assert.equal(sent['7'].inputs.seed, 11);
    assert.equal(sent['5'].inputs.batch_size, 1);
  });
});

describe('params allow-list (pure)', () => {
  const config = testConfig({
    providers: {
      main: { type: 'sim', keys: [{ id: 'k1' }] },
      paid: { type: 'openai', keys: [{ id: 'o1', secret: 'sk-test' }], baseUrl: 'http://127.0.0.1:9' },
      tuned: {
        type: 'openai',
        keys: [{ id: 'o2', secret: 'sk-test' }],
        baseUrl: 'http://127.0.0.1:9',
        taskParams: {
          quality: { type: 'oneOf', values: ['low', 'medium'] },
          note: { type: 'string', maxLength: 20_000 },
        },
      },
    },
    pipelines: {
      photography: { steps: [{ name: 'generate', provider: 'main', batchSize: 5 }, { name: 'store' }] },
      fitting: { steps: [{ name: 'generate', provider: 'main', batchSize: 5 }, { name: 'store' }] },
      paid: { steps: [{ name: 'generate', provider: 'paid', batchSize: 1 }, { name: 'store' }] },
      tuned: { steps: [{ name: 'generate', provider: 'tuned', batchSize: 1 }, { name: 'store' }] },
      mixed: {
        steps: [
          { name: 'beautify', provider: 'main', calls: 1 },
          { name: 'generate', provider: 'tuned', batchSize: 1 },
          { name: 'store' },
        ],
      },
    },
  });
  const refused = (type: string, params: Record<string, unknown>, field: RegExp) =>
    assert.throws(
      () => checkTaskParams(config, type, params),
      (error: Error & { code?: string }) => error.code === 'validation_failed' && field.test(error.message),
      `${type} ${JSON.stringify(params).slice(0, 80)}`,
    );

  it('refuses names a provider does not allow, values out of bounds, and oversized params', () => {
    refused(
      'photography',
      { width: 4096, height: 4096 },
      /^params\.width: must be an integer from 16 to 1024/,
    );
    refused('photography', { width: 512.5 }, /^params\.width/);
    refused('photography', { width: '512' }, /^params\.width/);
    refused('photography', { input_person: 'x.png' }, /^params\.input_person: not a parameter/);
    refused('photography', { constructor: 1 }, /^params\.constructor: not a parameter/);
    refused('photography', { nested: { a: { b: 1 } } }, /^params\.nested/);
    refused('photography', { seed: -1 }, /^params\.seed/);
    refused('photography', { seed: 2 ** 40 }, /^params\.seed/);
    // OpenAI's size and quality cost money: not a task's to choose unless the operator lists them.
    refused('paid', { size: '1792x1024' }, /^params\.size: not a parameter/);
    refused('paid', { quality: 'high' }, /^params\.quality: not a parameter/);
    // dall-e-3's style: GPT image models (the default) refuse it, so it is not on the default list.
    refused('paid', { style: 'natural' }, /^params\.style: not a parameter/);
    refused('tuned', { quality: 'high' }, /^params\.quality: must be one of "low", "medium"/);
    refused('tuned', { note: 'x'.repeat(17 * 1024) }, /^params: \d+ bytes as JSON, more than 16384/);
    // A name two providers of the pipeline share must fit both; one only the other knows passes.
    refused('mixed', { quality: 'high' }, /^params\.quality/);
  });

  it('accepts what the provider allows', () => {
    checkTaskParams(config, 'photography', { width: 1024, height: 16, seed: 0 });
    checkTaskParams(config, 'paid', {
      background: 'opaque',
      output_format: 'webp',
      seed: 2 ** 32 - 1,
    });
    checkTaskParams(config, 'tuned', { quality: 'low', note: 'hello' });
    checkTaskParams(config, 'mixed', { width: 64, quality: 'medium' });
    assert.deepEqual(Object.keys(DEFAULT_TASK_PARAMS).sort(), ['comfyui', 'gemini', 'openai', 'sim']);
  });
});

describeEachDb('params at the API', (kind) => {
  const t = useTestServer(kind);

  it('refuses out-of-bounds params with 400 naming the field, storing and charging nothing', async () => {
    const before = await storedRows(t.server.ctx.db);
    for (const params of [
      { width: 4096, height: 4096 },
      { input_person: 'someone-else.png' },
      { steps: 5000 },
    ]) {
      const res = await postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: 'eve',
        type: 'photography',
        plan: 'free',
        params,
      });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      const error = res.body.error as { code: string; message: string };
      assert.equal(error.code, 'validation_failed');
      assert.match(error.message, new RegExp(`^params\\.${Object.keys(params)[0]}:`));
    }
    assert.deepEqual(await storedRows(t.server.ctx.db), before);
  });

  it('passes allowed params through to the provider', async () => {
    const res = await postJson(t.server.baseUrl, '/v1/tasks', {
      user_id: 'ann',
      type: 'photography',
      plan: 'free',
      params: { width: 64, height: 48 },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const task = await waitFor('the task to end', async () => {
      const view = await getJson(t.server.baseUrl, `/v1/tasks/${String(res.body.id)}`);
      return view.body.state === 'succeeded' ? view.body : undefined;
    });
    const images = task.images as Array<{ width: number; height: number }>;
    assert.equal(images.length, 2);
    for (const image of images) assert.deepEqual([image.width, image.height], [64, 48]);
  });
});
