import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/load.ts';
import {
  geminiModelResource,
  requestsFor,
  resolveCapabilities,
  UNLIMITED,
} from '../../src/providers/capabilities.ts';
import { generateContentUrl } from '../../src/providers/gemini.ts';

const gemini = (over: Record<string, unknown> = {}, keyOver: Record<string, unknown> = {}) => ({
  providers: {
    g: { type: 'gemini', keys: [{ id: 'k', secret: 's', ...keyOver }], ...over },
  },
  pipelines: {
    photography: {
      steps: [
        { name: 'generate', provider: 'g', batchSize: 5 },
        { name: 'store', concurrency: 5 },
      ],
    },
  },
});

describe('provider capabilities', () => {
  it('Gemini image models return one image per request; the simulator and ComfyUI batch natively', () => {
    assert.equal(
      resolveCapabilities({ type: 'gemini', model: 'gemini-2.5-flash-image' }).maxImagesPerRequest,
      1,
    );
    assert.equal(resolveCapabilities({ type: 'sim' }).maxImagesPerRequest, UNLIMITED);
    assert.equal(resolveCapabilities({ type: 'sim', baseUrl: 'http://x' }).maxImagesPerRequest, 10);
    assert.equal(resolveCapabilities({ type: 'comfyui' }).maxImagesPerRequest, UNLIMITED);
    // OpenAI facts from src/providers/openai-models.ts: n ≤ 10 on current GPT image models.
    assert.equal(resolveCapabilities({ type: 'openai' }).maxImagesPerRequest, 10);
    assert.equal(resolveCapabilities({ type: 'openai', model: 'gpt-image-1.5' }).maxImagesPerRequest, 10);
    assert.equal(
      resolveCapabilities({ type: 'openai', params: { output_format: 'svg' } }).maxImagesPerRequest,
      1,
    );
    assert.equal(resolveCapabilities({ type: 'openai', model: 'relay-own-id' }).maxImagesPerRequest, 1);
    assert.equal(
      resolveCapabilities({ type: 'openai', model: 'relay-own-id', maxImagesPerRequest: 4 })
        .maxImagesPerRequest,
      4,
    );
    assert.equal(resolveCapabilities({ type: 'sim', maxImagesPerRequest: 2 }).maxImagesPerRequest, 2);
  });

  it('a job costs one request per maxImagesPerRequest images', () => {
    assert.deepEqual(
      [
        requestsFor(5, 1),
        requestsFor(5, 2),
        requestsFor(5, 10),
        requestsFor(5, UNLIMITED),
        requestsFor(1, 1),
      ],
      [5, 3, 1, 1, 1],
    );
  });

  it('an override above what the model supports is refused at start-up, naming the field', () => {
    assert.throws(
      () => resolveConfig(gemini({ maxImagesPerRequest: 4 })),
      /providers\.g\.maxImagesPerRequest: 4 is more than Gemini model models\/gemini-2\.5-flash-image supports \(1 image per request\)/,
    );
    assert.doesNotThrow(() => resolveConfig(gemini({ maxImagesPerRequest: 1 })));
  });

  it('a batch whose requests fit on no key is refused at start-up, naming batchSize', () => {
    assert.throws(
      () => resolveConfig(gemini({}, { concurrency: 3 })),
      /pipelines\.photography\.steps\[0\]\.batchSize: a batch of 5 images is 5 requests on provider "g".*no enabled key allows 5 requests at once/,
    );
    assert.throws(
      () => resolveConfig(gemini({ concurrency: 4 })),
      /steps\[0\]\.batchSize: .*more than providers\.g\.concurrency \(4\)/,
    );
    assert.doesNotThrow(() => resolveConfig(gemini({}, { concurrency: 5 })));
  });

  it('names a model as @google/genai tModel does: models/x stays, a bare id gets models/, no encoded slash', () => {
    assert.equal(geminiModelResource('gemini-2.5-flash-image'), 'models/gemini-2.5-flash-image');
    assert.equal(geminiModelResource('models/gemini-2.5-flash-image'), 'models/gemini-2.5-flash-image');
    assert.equal(geminiModelResource('tunedModels/my-model'), 'tunedModels/my-model');
    assert.equal(
      generateContentUrl('https://generativelanguage.googleapis.com/', 'models/gemini-3-pro-image-preview'),
      'https://generativelanguage.googleapis.com/v1beta/models/gemini-3-pro-image-preview:generateContent',
    );
  });
});
