import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import sharp from 'sharp';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { nextPacificMidnightMs } from '../../src/policy/rests.ts';
import { withRequestLimit } from '../../src/providers/fan-out.ts';
import { classifyGeminiBody, createGeminiProvider } from '../../src/providers/gemini.ts';
import { itClassifiesFaults, noSecretIn, simFaults } from '../helpers/adapter-faults.ts';
import type { ProviderCall, ProviderKey } from '../../src/providers/types.ts';

const SECRET = 'AIzaSy-gemini-test-secret-7f3a9c';
const KEY: ProviderKey = { id: 'gem-key-1', secret: SECRET };

function callWith(overrides: Partial<ProviderCall> = {}): ProviderCall {
  return {
    taskId: 'task-1',
    jobId: 'job-1',
    step: 'generate',
    prompt: 'a red fox in the snow',
    inputs: [],
    count: 1,
    seed: 1234,
    firstIndex: 0,
    params: {},
    key: KEY,
    signal: new AbortController().signal,
    ...overrides,
  };
}

const assertNoSecret = noSecretIn(SECRET);

describe('gemini adapter against the fake provider', () => {
  const clock = 2_000_000;
  let sim: FakeProviderHandle;
  let baseUrl: string;
  const faults = simFaults(() => sim.url, 'gem');
  const adapter = (timeoutMs = 2000) =>
    createGeminiProvider({ baseUrl, model: 'gemini-2.5-flash-image', timeoutMs });

  before(async () => {
    sim = await startFakeProvider({
      now: () => clock,
      imageSize: 32,
      trickleMs: 600,
      providers: [
        {
          name: 'gem',
          keys: [{ id: 'gem-key-1', secret: SECRET, rpm: 1000, concurrency: 10 }],
          latencyMs: 3,
          jitterMs: 2,
          errorRate: 0,
          retryAfterSeconds: 7,
        },
        {
          name: 'tight',
          keys: [{ id: 'sim-key', rpm: 1, concurrency: 10 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
    baseUrl = `${sim.url}/p/gem`;
  });
  after(() => sim.close());
  beforeEach(async () => {
    await fetch(`${sim.url}/_sim/reset`, { method: 'POST' });
  });

  it('returns a batch of 3 as 3 decodable PNGs from 3 requests (image models take one candidate each)', async () => {
    const outcome = await withRequestLimit(adapter(), 1).call(callWith({ count: 3 }));
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 3);
    for (const image of outcome.images) {
      assert.equal(image.mime, 'image/png');
      const metadata = await sharp(image.data).metadata();
      assert.equal(metadata.format, 'png');
      assert.equal(metadata.width, 32);
    }
    assert.equal(sim.stats().providers.gem?.keys['gem-key-1']?.requests, 3);
    assert.equal(new Set(outcome.images.map((i) => i.data.toString('base64'))).size, 3, 'distinct seeds');
  });

  it('is refused as the real API refuses candidateCount > 1 on an image model (google-gemini/gemini-cli#10370)', async () => {
    const outcome = await adapter().call(callWith({ count: 3 }));
    assert.equal(outcome.kind, 'permanent');
    assert.match(outcome.message, /Multiple candidates is not enabled for models\/gemini-2\.5-flash-image/);
  });

  it('keeps the images that came back when some requests of a batch fail, and says why the rest failed', async () => {
    await faults(['http503', 'http429_daily']);
    const outcome = await withRequestLimit(adapter(), 1).call(callWith({ count: 4 }));
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 2);
    // The most retryable failure classifies the images still owed: the daily quota's 429.
    assert.equal(outcome.shortfall?.kind, 'rate_limited');
    assert.match(outcome.shortfall.message, /^2 of 4 requests failed/);
  });

  it('a model named models/<id> reaches the model, not an escaped path', async () => {
    const named = createGeminiProvider({ baseUrl, model: 'models/gemini-2.5-flash-image', timeoutMs: 2000 });
    assert.equal((await named.call(callWith())).kind, 'success');
  });

  it('honours imageConfig.aspectRatio with the documented output size', async () => {
    const outcome = await adapter().call(callWith({ params: { aspectRatio: '16:9' } }));
    assert.equal(outcome.kind, 'success');
    const metadata = await sharp(outcome.images[0]!.data).metadata();
    assert.deepEqual([metadata.width, metadata.height], [1344, 768]);
  });

  it('a 429 naming a per-day quota rests the key until midnight Pacific time', async () => {
    await faults(['http429_daily']);
    const outcome = await adapter().call(callWith());
    assert.equal(outcome.kind, 'rate_limited');
    const now = Date.now();
    const resetAt = nextPacificMidnightMs(now);
    // The adapter reads the wall clock at the edge: allow the seconds this test takes.
    assert.ok(Math.abs(now + (outcome.retryAfterMs ?? 0) - resetAt) < 60_000);
    assert.match(outcome.rest ?? '', /daily quota GenerateRequestsPerDayPerProjectPerModel-FreeTier/);
  });

  it('a 429 without RetryInfo carries no retry hint (the key rest then grows per repeat)', async () => {
    await faults(['http429_no_retry_info']);
    const outcome = await adapter().call(callWith());
    assert.equal(outcome.kind, 'rate_limited');
    assert.equal(outcome.retryAfterMs, undefined);
    assert.equal(outcome.rest, undefined);
  });

  it('sends input images as inlineData parts', async () => {
    const photo = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#00f' } })
      .jpeg()
      .toBuffer();
    const outcome = await adapter().call(
      callWith({ inputs: [{ data: photo, mime: 'image/jpeg', role: 'person' }] }),
    );
    assert.equal(outcome.kind, 'success');
  });

  it('uses the key id as the credential when the key has no secret (the simulator)', async () => {
    const tight = createGeminiProvider({ baseUrl: `${sim.url}/p/tight`, model: 'm', timeoutMs: 2000 });
    const outcome = await tight.call(callWith({ key: { id: 'sim-key', secret: undefined } }));
    assert.equal(outcome.kind, 'success');
  });

  it('reads retryAfterMs from RetryInfo when the key is over its rpm', async () => {
    const tight = createGeminiProvider({ baseUrl: `${sim.url}/p/tight`, model: 'm', timeoutMs: 2000 });
    const call = callWith({ key: { id: 'sim-key', secret: undefined } });
    assert.equal((await tight.call(call)).kind, 'success');
    const limited = await tight.call(call);
    assert.equal(limited.kind, 'rate_limited');
    assert.equal(limited.retryAfterMs, 60_000, 'the clock stands still, so the whole window is left');
    assert.match(limited.message, /RESOURCE_EXHAUSTED/);
  });

  it('classifies a scripted 429 with its RetryInfo delay', async () => {
    await faults(['http429']);
    const outcome = await adapter().call(callWith());
    assert.deepEqual(
      { kind: outcome.kind, retryAfterMs: outcome.kind === 'rate_limited' ? outcome.retryAfterMs : 0 },
      { kind: 'rate_limited', retryAfterMs: 7000 },
    );
    assertNoSecret(outcome);
  });

  itClassifiesFaults({
    inject: faults,
    call: () => adapter().call(callWith()),
    assertNoSecret,
    permanent: [
      { fault: 'refusal', reason: 'refused' },
      { fault: 'no_image', reason: 'no_image' },
      { fault: 'not_an_image', reason: 'not_an_image' },
    ],
  });

  it('times out a request that never answers', async () => {
    await faults(['hang']);
    const started = Date.now();
    const outcome = await adapter(150).call(callWith());
    assert.equal(outcome.kind, 'timeout');
    assert.ok(Date.now() - started < 1000);
    assertNoSecret(outcome);
  });

  it('times out a body that trickles past the timeout, and accepts one that arrives within it', async () => {
    await faults(['trickle', 'trickle']);
    assert.equal((await adapter(150).call(callWith())).kind, 'timeout');
    const slowButComplete = await adapter(3000).call(callWith());
    assert.equal(slowButComplete.kind, 'success');
  });

  it('turns an abort by the caller into a transient outcome', async () => {
    await faults(['hang']);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const outcome = await adapter(5000).call(callWith({ signal: controller.signal }));
    assert.equal(outcome.kind, 'transient');
    assert.match(outcome.message, /aborted by the caller/);
  });

  it('classifies an invalid key as permanent without echoing it', async () => {
    const outcome = await adapter().call(callWith({ key: { id: 'gem-key-1', secret: `${SECRET}-wrong` } }));
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'api_key_invalid');
    assertNoSecret(outcome);
  });

  it('classifies an unreachable server as transient', async () => {
    const closed = await startFakeProvider({ providers: [] });
    const url = closed.url;
    await closed.close();
    const outcome = await createGeminiProvider({ baseUrl: url, model: 'm', timeoutMs: 2000 }).call(
      callWith(),
    );
    assert.equal(outcome.kind, 'transient');
    assertNoSecret(outcome);
  });
});

describe('gemini response classification', () => {
  it('treats a candidate stopped for IMAGE_SAFETY as a refusal', async () => {
    const outcome = await classifyGeminiBody({ candidates: [{ finishReason: 'IMAGE_SAFETY', index: 0 }] }, 1);
    assert.deepEqual(outcome, {
      kind: 'permanent',
      reason: 'refused',
      message: 'gemini: generation stopped (finishReason IMAGE_SAFETY), no image',
    });
  });

  it('treats a text-only answer as no image', async () => {
    const outcome = await classifyGeminiBody(
      { candidates: [{ content: { parts: [{ text: 'Here is a poem instead.' }] }, finishReason: 'STOP' }] },
      1,
    );
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'no_image');
    assert.match(outcome.message, /poem/);
  });
});
