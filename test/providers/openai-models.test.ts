import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, resolveConfig } from '../../src/config/load.ts';
import {
  checkOpenAIProvider,
  DEFAULT_OPENAI_IMAGE_MODEL,
  findOpenAIImageModel,
  openAIImageModels,
  sizeProblem,
} from '../../src/providers/openai-models.ts';

// The SDK's own list (openai-node src/resources/images.ts, `ImageModel`), read from the installed
// devDependency so that a new SDK release that adds or retires a model fails this test.
async function sdkImageModels(): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const source = await readFile(
    new URL('../../node_modules/openai/src/resources/images.ts', import.meta.url),
    'utf8',
  );
  const union = /export type ImageModel =([^;]+);/.exec(source)?.[1] ?? '';
  return [...union.matchAll(/'([^']+)'/g)].map((match) => match[1] ?? '');
}

function openaiConfig(provider: Record<string, unknown>, stepParams: Record<string, unknown> = {}) {
  return {
    providers: {
      openai: { type: 'openai', keys: [{ id: 'k', secret: 'sk-test' }], ...provider },
    },
    pipelines: {
      p: {
        steps: [
          { name: 'generate', provider: 'openai', batchSize: 2, params: stepParams },
          { name: 'store', concurrency: 1 },
        ],
      },
    },
  };
}

function refusal(input: Record<string, unknown>): string {
  try {
    resolveConfig(input, {}, 'test');
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail('the configuration was accepted');
}

describe('OpenAI image models', () => {
  it('knows exactly the models of the SDK, with its shut-down and retired ones marked', async () => {
    assert.deepEqual(
      openAIImageModels()
        .map((model) => model.id)
        .sort(),
      (await sdkImageModels()).sort(),
    );
    assert.equal(findOpenAIImageModel('gpt-image-1')?.status, 'shut_down');
    assert.equal(findOpenAIImageModel('dall-e-2')?.status, 'retired');
    assert.equal(findOpenAIImageModel('dall-e-3')?.status, 'retired');
    assert.equal(findOpenAIImageModel(DEFAULT_OPENAI_IMAGE_MODEL)?.status, 'current');
    for (const model of openAIImageModels().filter((m) => m.status === 'current')) {
      assert.equal(model.maxImagesPerRequest, 10, `${model.id}: n "Must be between 1 and 10"`);
      assert.equal(
        model.acceptsResponseFormat,
        false,
        `${model.id}: GPT image models refuse response_format`,
      );
    }
  });

  it('checks sizes as the SDK documents them', () => {
    assert.equal(sizeProblem('1536x1024', 'standard'), undefined);
    assert.equal(sizeProblem('auto', 'standard'), undefined);
    assert.match(sizeProblem('1536x864', 'standard') ?? '', /supported values/);
    assert.equal(sizeProblem('1536x864', 'flexible'), undefined); // the SDK's own example
    assert.equal(sizeProblem('3840x2160', 'flexible'), undefined);
    assert.match(sizeProblem('1000x1000', 'flexible') ?? '', /divisible by 16/);
    assert.match(sizeProblem('3072x1008', 'flexible') ?? '', /1:3 and 3:1/);
    assert.match(sizeProblem('3840x2176', 'flexible') ?? '', /3840x2160/);
    assert.match(sizeProblem('512x512', 'flexible') ?? '', /pixels/);
  });
});

describe('start-up checks of an openai provider', () => {
  it('refuses a shut-down or retired model, naming the field and the replacement', () => {
    assert.match(
      refusal(openaiConfig({ model: 'gpt-image-1' })),
      /providers\.openai\.model: "gpt-image-1" was shut down by OpenAI on 2026-10-23; use gpt-image-2\.5-sunburst or gpt-image-2\.5-flare/,
    );
    assert.match(
      refusal(openaiConfig({ model: 'dall-e-3' })),
      /providers\.openai\.model: "dall-e-3" was retired/,
    );
  });

  it('refuses response_format and style for GPT image models, in provider and step params', () => {
    assert.match(
      refusal(openaiConfig({ model: 'gpt-image-1.5', params: { response_format: 'b64_json' } })),
      /providers\.openai\.params\.response_format: gpt-image-1\.5 does not accept response_format/,
    );
    assert.match(
      refusal(openaiConfig({}, { style: 'vivid' })),
      /pipelines\.p\.steps\[0\]\.params\.style: gpt-image-2 does not accept style/,
    );
  });

  it('refuses sizes, qualities and formats the model does not take, and n above its bound', () => {
    assert.match(
      refusal(openaiConfig({ model: 'gpt-image-1.5', params: { size: '1536x864' } })),
      /providers\.openai\.params\.size: "1536x864"/,
    );
    assert.match(
      refusal(openaiConfig({ model: 'gpt-image-1.5', params: { quality: 'max' } })),
      /params\.quality: gpt-image-1\.5 accepts low, medium, high, auto/,
    );
    assert.match(refusal(openaiConfig({ params: { output_format: 'bmp' } })), /params\.output_format/);
    assert.match(
      refusal(openaiConfig({ maxImagesPerRequest: 12 })),
      /providers\.openai\.maxImagesPerRequest: gpt-image-2 returns at most 10/,
    );
  });

  it('refuses an id OpenAI itself does not serve, unless its batch size is stated', () => {
    for (const baseUrl of [undefined, 'https://api.openai.com', 'https://api.openai.com/']) {
      assert.match(
        refusal(openaiConfig({ model: 'gpt-image-15', ...(baseUrl ? { baseUrl } : {}) })),
        /providers\.openai\.model: "gpt-image-15" is not an OpenAI image model \(current: .*gpt-image-2.*\); for a relay's own model set providers\.openai\.baseUrl/,
      );
    }
    const newer = resolveConfig(openaiConfig({ model: 'gpt-image-3', maxImagesPerRequest: 10 }), {});
    assert.match(newer.warnings?.[0] ?? '', /"gpt-image-3" is not an OpenAI image model darkroom knows/);
  });

  it('refuses input_fidelity a model does not take, and svg output on a batching step', () => {
    assert.match(
      refusal(openaiConfig({ model: 'gpt-image-2', params: { input_fidelity: 'high' } })),
      /providers\.openai\.params\.input_fidelity: gpt-image-2 takes no input_fidelity/,
    );
    assert.match(
      refusal(openaiConfig({ model: 'gpt-image-1-mini' }, { input_fidelity: 'high' })),
      /steps\[0\]\.params\.input_fidelity: gpt-image-1-mini accepts low/,
    );
    resolveConfig(openaiConfig({ model: 'gpt-image-1.5', params: { input_fidelity: 'high' } }), {});
    assert.match(
      refusal(openaiConfig({}, { output_format: 'svg' })),
      /steps\[0\]\.params\.output_format: svg output takes one image per request/,
    );
    resolveConfig(openaiConfig({ params: { output_format: 'svg' } }), {});
  });

  it('accepts current models and relays, warning about ids it does not know', () => {
    const current = resolveConfig(
      openaiConfig({ model: 'gpt-image-2.5-flare', params: { quality: 'xhigh' } }),
      {},
    );
    assert.deepEqual(current.warnings, []);
    const relay = resolveConfig(
      openaiConfig({
        model: 'flux-kontext-pro',
        baseUrl: 'https://relay.example.com',
        params: { response_format: 'b64_json' },
      }),
      {},
    );
    assert.match(
      relay.warnings?.[0] ?? '',
      /"flux-kontext-pro" is not an OpenAI image model .* at most 1 image/,
    );
    const check = checkOpenAIProvider('providers.relay', {
      model: 'flux',
      maxImagesPerRequest: 4,
      params: {},
    });
    assert.deepEqual(check.problems, []);
    assert.match(check.warnings[0] ?? '', /at most 4 image/);
  });
});
