/**
 * The official `@google/genai` client (devDependency, 3.x) against the strict simulator, for every
 * operation darkroom uses — `models.generateContent` on an image model, text only or with input
 * images as inlineData — and darkroom's own Gemini adapter against the same simulator, case by
 * case. Each case asserts what the real API does, with where it is documented.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ApiError, GoogleGenAI } from '@google/genai';
import sharp from 'sharp';
import {
  startFakeProvider,
  type FakeProviderHandle,
  type Fault,
} from '../../src/providers/fake-server/index.ts';
import { withRequestLimit } from '../../src/providers/fan-out.ts';
import { createGeminiProvider } from '../../src/providers/gemini.ts';
import type { ProviderCall, ProviderOutcome } from '../../src/providers/types.ts';

const SECRET = 'AIzaSy-contract-test-key-0001';
const MODEL = 'gemini-2.5-flash-image';

interface GoogleErrorBody {
  error: { code: number; status: string; message: string; details?: Array<Record<string, unknown>> };
}

/** The SDK throws ApiError with the response body, JSON-encoded, as its message (throwErrorIfNotOK). */
async function apiError(promise: Promise<unknown>): Promise<{ status: number; body: GoogleErrorBody }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ApiError, `expected the SDK's ApiError, got ${String(error)}`);
    return { status: error.status, body: JSON.parse(error.message) as GoogleErrorBody };
  }
  assert.fail('the request succeeded');
}

const detail = (body: GoogleErrorBody, type: string) =>
  body.error.details?.find((d) => String(d['@type']).endsWith(type));

function call(over: Partial<ProviderCall> = {}): ProviderCall {
  return {
    taskId: 't',
    jobId: 'j',
    step: 'generate',
    prompt: 'a lighthouse at dusk',
    inputs: [],
    count: 1,
    seed: 42,
    firstIndex: 0,
    params: {},
    key: { id: 'k', secret: SECRET },
    signal: new AbortController().signal,
    ...over,
  };
}

function rateLimited(outcome: ProviderOutcome): Extract<ProviderOutcome, { kind: 'rate_limited' }> {
  assert.equal(outcome.kind, 'rate_limited', JSON.stringify(outcome));
  return outcome as Extract<ProviderOutcome, { kind: 'rate_limited' }>;
}

describe('contract: @google/genai and darkroom against the Gemini simulator', () => {
  let sim: FakeProviderHandle;
  let sdk: GoogleGenAI;
  let tightSdk: GoogleGenAI;
  const base = (provider: string) => `${sim.url}/p/${provider}`;
  const adapter = (provider = 'gem', model = MODEL) =>
    createGeminiProvider({ baseUrl: base(provider), model, timeoutMs: 10_000 });
  const faults = async (list: Fault[]): Promise<void> => {
    const response = await fetch(`${sim.url}/_sim/faults`, {
      method: 'POST',
      body: JSON.stringify({ provider: 'gem', faults: list }),
    });
    assert.equal(response.status, 200);
  };

  before(async () => {
    sim = await startFakeProvider({
      now: () => 5_000_000, // a clock that stands still: the rpm window never slides during a test
      imageSize: 64,
      providers: [
        {
          name: 'gem',
          keys: [{ id: 'k', secret: SECRET, rpm: 1000, concurrency: 20 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 0,
        },
        {
          name: 'tight',
          keys: [{ id: 'k', secret: SECRET, rpm: 1, concurrency: 20 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
    // httpOptions.baseUrl replaces https://generativelanguage.googleapis.com; no retryOptions: the
    // SDK then makes exactly one attempt per call (ApiClient.apiCall).
    sdk = new GoogleGenAI({ apiKey: SECRET, httpOptions: { baseUrl: base('gem') } });
    tightSdk = new GoogleGenAI({ apiKey: SECRET, httpOptions: { baseUrl: base('tight') } });
  });
  after(() => sim.close());
  beforeEach(async () => {
    await fetch(`${sim.url}/_sim/reset`, { method: 'POST' });
  });

  it('an image comes back as inlineData in the first candidate (SDK) and as one image (darkroom)', async () => {
    // https://ai.google.dev/gemini-api/docs/image-generation: the image is an inlineData part.
    const response = await sdk.models.generateContent({
      model: MODEL,
      contents: 'a lighthouse at dusk',
      config: { responseModalities: ['TEXT', 'IMAGE'], seed: 42 },
    });
    const part = response.candidates?.[0]?.content?.parts?.find((p) => p.inlineData);
    assert.equal(part?.inlineData?.mimeType, 'image/png');
    const metadata = await sharp(Buffer.from(part!.inlineData!.data!, 'base64')).metadata();
    assert.equal(metadata.format, 'png');
    const outcome = await adapter().call(call());
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 1);
  });

  it('input images travel as inlineData parts beside the prompt (editing), for both', async () => {
    const photo = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#a33' } })
      .png()
      .toBuffer();
    const response = await sdk.models.generateContent({
      model: MODEL,
      contents: [
        {
          role: 'user',
          parts: [
            { text: 'make it blue' },
            { inlineData: { mimeType: 'image/png', data: photo.toString('base64') } },
          ],
        },
      ],
      config: { responseModalities: ['TEXT', 'IMAGE'] },
    });
    assert.ok(response.candidates?.[0]?.content?.parts?.some((p) => p.inlineData));
    const outcome = await adapter().call(
      call({ inputs: [{ data: photo, mime: 'image/png', role: 'input' }] }),
    );
    assert.equal(outcome.kind, 'success');
  });

  it('imageConfig.aspectRatio sets the output size of the documented table (16:9 → 1344×768, 2:3 → 832×1248)', async () => {
    // https://ai.google.dev/gemini-api/docs/image-generation, "Aspect ratios" (gemini-2.5-flash-image).
    const response = await sdk.models.generateContent({
      model: MODEL,
      contents: 'a wide beach',
      config: { responseModalities: ['IMAGE'], imageConfig: { aspectRatio: '16:9' } },
    });
    const data = response.candidates?.[0]?.content?.parts?.find((p) => p.inlineData)?.inlineData?.data;
    const sdkSize = await sharp(Buffer.from(data!, 'base64')).metadata();
    assert.deepEqual([sdkSize.width, sdkSize.height], [1344, 768]);
    const outcome = await adapter().call(call({ params: { aspectRatio: '2:3' } }));
    assert.equal(outcome.kind, 'success');
    const ours = await sharp(outcome.images[0]!.data).metadata();
    assert.deepEqual([ours.width, ours.height], [832, 1248]);
  });

  it('candidateCount > 1 on an image model is a 400 INVALID_ARGUMENT; darkroom sends a batch as one request per image', async () => {
    // google-gemini/gemini-cli#10370: "Multiple candidates is not enabled for models/gemini-2.5-flash-image-preview".
    const { status, body } = await apiError(
      sdk.models.generateContent({ model: MODEL, contents: 'two foxes', config: { candidateCount: 2 } }),
    );
    assert.equal(status, 400);
    assert.equal(body.error.status, 'INVALID_ARGUMENT');
    assert.equal(body.error.message, `Multiple candidates is not enabled for models/${MODEL}`);
    // The bare adapter asked for 3 candidates would get the same 400 …
    const bare = await adapter().call(call({ count: 3 }));
    assert.equal(bare.kind, 'permanent');
    // … so darkroom splits the batch (capabilities: 1 image per request): 3 requests, 3 images.
    const split = await withRequestLimit(adapter(), 1).call(call({ count: 3 }));
    assert.equal(split.kind, 'success');
    assert.equal(split.images.length, 3);
    assert.equal(sim.stats().providers.gem?.keys.k?.requests, 1 + 1 + 3);
  });

  it('a model named models/<id> is the same model for the SDK (tModel) and for darkroom', async () => {
    // @google/genai tModel: "models/…" is kept as is, a bare id gets "models/"; path "{model}:generateContent".
    const response = await sdk.models.generateContent({ model: `models/${MODEL}`, contents: 'a fox' });
    assert.ok(response.candidates?.[0]?.content?.parts?.some((p) => p.inlineData));
    const outcome = await adapter('gem', `models/${MODEL}`).call(call());
    assert.equal(outcome.kind, 'success');
  });

  it('429 over the per-minute quota: QuotaFailure + RetryInfo; darkroom waits the retryDelay', async () => {
    // https://ai.google.dev/gemini-api/docs/troubleshooting (429 RESOURCE_EXHAUSTED); google.rpc.RetryInfo
    // (googleapis/googleapis google/rpc/error_details.proto) carries retryDelay as a Duration.
    await tightSdk.models.generateContent({ model: MODEL, contents: 'first' });
    const { status, body } = await apiError(
      tightSdk.models.generateContent({ model: MODEL, contents: 'second' }),
    );
    assert.equal(status, 429);
    assert.equal(body.error.status, 'RESOURCE_EXHAUSTED');
    assert.equal(detail(body, 'google.rpc.RetryInfo')?.retryDelay, '60s');
    const violations = detail(body, 'google.rpc.QuotaFailure')?.violations as Array<{ quotaId: string }>;
    assert.match(violations[0]!.quotaId, /PerMinute/);
    const outcome = rateLimited(await adapter('tight').call(call()));
    assert.equal(outcome.retryAfterMs, 60_000);
    assert.equal(outcome.rest, undefined);
  });

  it('429 without RetryInfo: no hint in the body; darkroom reports none (the key rest then doubles per repeat)', async () => {
    // googleapis/python-genai#2065: "429 RESOURCE_EXHAUSTED … Resource has been exhausted (e.g. check quota)." with no details.
    await faults(['http429_no_retry_info', 'http429_no_retry_info']);
    const { status, body } = await apiError(sdk.models.generateContent({ model: MODEL, contents: 'x' }));
    assert.equal(status, 429);
    assert.equal(body.error.details, undefined);
    const outcome = rateLimited(await adapter().call(call()));
    assert.equal(outcome.retryAfterMs, undefined);
  });

  it('429 over a per-day quota: QuotaFailure …PerDay…, no RetryInfo; darkroom rests the key until midnight Pacific time', async () => {
    // google-gemini/gemini-cli#8437 shows the violation; "Requests per day (RPD) quotas reset at midnight
    // Pacific time" (https://ai.google.dev/gemini-api/docs/rate-limits).
    await faults(['http429_daily', 'http429_daily']);
    const { status, body } = await apiError(sdk.models.generateContent({ model: MODEL, contents: 'x' }));
    assert.equal(status, 429);
    assert.equal(detail(body, 'google.rpc.RetryInfo'), undefined);
    const violations = detail(body, 'google.rpc.QuotaFailure')?.violations as Array<{ quotaId: string }>;
    assert.equal(violations[0]!.quotaId, 'GenerateRequestsPerDayPerProjectPerModel-FreeTier');
    const outcome = rateLimited(await adapter().call(call()));
    assert.ok((outcome.retryAfterMs ?? 0) > 0 && (outcome.retryAfterMs ?? 0) <= 25 * 3_600_000);
    assert.match(outcome.rest ?? '', /resets at midnight Pacific time/);
  });
});
