import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import sharp from 'sharp';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { SIMULATOR_IMAGE_MODEL } from '../../src/providers/openai-models.ts';
import { classifyOpenAIError, createOpenAIProvider, openAIRetryAfterMs } from '../../src/providers/openai.ts';
import { itClassifiesFaults, noSecretIn, simFaults } from '../helpers/adapter-faults.ts';
import type { ProviderCall, ProviderKey } from '../../src/providers/types.ts';

const SECRET = 'sk-proj-openai-test-secret-19d2e';
const KEY: ProviderKey = { id: 'oa-key-1', secret: SECRET };

function callWith(overrides: Partial<ProviderCall> = {}): ProviderCall {
  return {
    taskId: 'task-1',
    jobId: 'job-1',
    step: 'generate',
    prompt: 'a paper boat on a pond',
    inputs: [],
    count: 1,
    seed: 99,
    firstIndex: 0,
    params: {},
    key: KEY,
    signal: new AbortController().signal,
    ...overrides,
  };
}

const assertNoSecret = noSecretIn(SECRET);

function headers(values: Record<string, string>): { get(name: string): string | null } {
  return { get: (name) => values[name] ?? null };
}

describe('openai adapter against the fake provider', () => {
  let clock = 3_000_000;
  let sim: FakeProviderHandle;
  let baseUrl: string;
  let photo: Buffer;
  const faults = simFaults(() => sim.url, 'oa');
  // GPT image models answer b64_json only; `url` results come from relays (here: the simulator's own model).
  const adapter = (options: { timeoutMs?: number; responseFormat?: 'url' | 'b64_json' } = {}) =>
    createOpenAIProvider({
      baseUrl,
      ...(options.responseFormat
        ? { model: SIMULATOR_IMAGE_MODEL, size: '64x64', responseFormat: options.responseFormat }
        : { model: 'gpt-image-1.5', size: '1024x1024' }),
      timeoutMs: options.timeoutMs ?? 30_000,
    });

  before(async () => {
    sim = await startFakeProvider({
      now: () => clock,
      trickleMs: 600,
      providers: [
        {
          name: 'oa',
          keys: [{ id: 'oa-key-1', secret: SECRET, rpm: 1000, concurrency: 10 }],
          latencyMs: 3,
          jitterMs: 2,
          errorRate: 0,
          retryAfterSeconds: 3,
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
    baseUrl = `${sim.url}/p/oa`;
    photo = await sharp({ create: { width: 16, height: 16, channels: 4, background: '#0a0' } })
      .png()
      .toBuffer();
  });
  after(() => sim.close());
  beforeEach(async () => {
    await fetch(`${sim.url}/_sim/reset`, { method: 'POST' });
  });

  it('generates count b64_json images in one request', async () => {
    const outcome = await adapter().call(callWith({ count: 2 }));
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 2);
    for (const image of outcome.images) {
      const metadata = await sharp(image.data).metadata();
      assert.deepEqual([metadata.format, metadata.width, metadata.height], ['png', 1024, 1024]);
    }
    assert.equal(sim.stats().providers.oa?.keys['oa-key-1']?.requests, 1);
  });

  it('says its answer is in once, with the body read, and not for a refusal', async () => {
    let answered = 0;
    const outcome = await adapter().call(callWith({ count: 2, onAnswered: () => answered++ }));
    assert.equal(outcome.kind, 'success');
    assert.equal(answered, 1);
    await faults(['http429']);
    const refused = await adapter().call(callWith({ onAnswered: () => answered++ }));
    assert.equal(refused.kind, 'rate_limited');
    assert.equal(answered, 1, 'a refusal is answered when the call returns');
  });

  it('downloads url results at once', async () => {
    const outcome = await adapter({ responseFormat: 'url' }).call(callWith({ count: 2 }));
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 2);
    assert.equal((await sharp(outcome.images[0]?.data).metadata()).format, 'png');
  });

  it('sends edits as multipart with image or image[]', async () => {
    const one = await adapter().call(
      callWith({ inputs: [{ data: photo, mime: 'image/png', role: 'person' }] }),
    );
    assert.equal(one.kind, 'success');
    const two = await adapter().call(
      callWith({
        inputs: [
          { data: photo, mime: 'image/png', role: 'person' },
          { data: photo, mime: 'image/png', role: 'garment' },
        ],
      }),
    );
    assert.equal(two.kind, 'success');
    assert.equal(sim.stats().providers.oa?.keys['oa-key-1']?.requests, 2);
  });

  it('classifies an input the API cannot read as permanent', async () => {
    const outcome = await adapter().call(
      callWith({ inputs: [{ data: Buffer.from('not a picture'), mime: 'image/png', role: 'person' }] }),
    );
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'invalid_image_format');
  });

  it('reads retryAfterMs from the headers when the key is over its rpm', async () => {
    const tight = createOpenAIProvider({
      baseUrl: `${sim.url}/p/tight`,
      model: SIMULATOR_IMAGE_MODEL,
      size: '64x64',
      timeoutMs: 30_000,
    });
    const call = callWith({ key: { id: 'sim-key', secret: undefined } });
    assert.equal((await tight.call(call)).kind, 'success');
    clock += 20_250;
    const limited = await tight.call(call);
    assert.equal(limited.kind, 'rate_limited');
    assert.equal(limited.retryAfterMs, 39_750);
    assert.match(limited.message, /rate_limit_exceeded/);
  });

  it('classifies a scripted 429 with its retry-after', async () => {
    await faults(['http429']);
    const outcome = await adapter().call(callWith());
    assert.equal(outcome.kind, 'rate_limited');
    assert.equal(outcome.retryAfterMs, 3000);
    assertNoSecret(outcome);
  });

  itClassifiesFaults({
    inject: faults,
    call: () => adapter().call(callWith()),
    assertNoSecret,
    permanent: [
      { fault: 'refusal', reason: 'refused' },
      { fault: 'no_image', reason: 'no_image' },
      ...(['b64_json', 'url'] as const).map((responseFormat) => ({
        fault: 'not_an_image' as const,
        reason: 'not_an_image',
        label: responseFormat,
        call: () => adapter({ responseFormat }).call(callWith()),
      })),
    ],
  });

  it('times out a request that never answers, and a body that trickles past the timeout', async () => {
    await faults(['hang', 'trickle', 'trickle']);
    assert.equal((await adapter({ timeoutMs: 150 }).call(callWith())).kind, 'timeout');
    assert.equal((await adapter({ timeoutMs: 150 }).call(callWith())).kind, 'timeout');
    assert.equal(
      (await adapter({ timeoutMs: 3000 }).call(callWith())).kind,
      'success',
      'slow but within the timeout',
    );
  });

  it('keeps a rejected key out of the message even though the API echoes it', async () => {
    const wrong = `${SECRET}-revoked`;
    const outcome = await adapter().call(callWith({ key: { id: 'oa-key-1', secret: wrong } }));
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'invalid_key');
    assert.ok(!outcome.message.includes(wrong));
    assert.match(outcome.message, /\[redacted\]/);
  });

  it('never sends the key to a result URL', async () => {
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#f00' } })
      .png()
      .toBuffer();
    const seen: IncomingHttpHeaders[] = [];
    const relay = createServer((req, res) => {
      seen.push(req.headers);
      if (req.url === '/v1/images/generations') {
        const port = (relay.address() as AddressInfo).port;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ created: 1, data: [{ url: `http://127.0.0.1:${port}/cdn/result.png` }] }));
      } else {
        res.writeHead(200, { 'content-type': 'image/png' });
        res.end(png);
      }
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const port = (relay.address() as AddressInfo).port;
      const outcome = await createOpenAIProvider({
        baseUrl: `http://127.0.0.1:${port}`,
        model: 'relay-image-model',
        timeoutMs: 30_000,
      }).call(callWith());
      assert.equal(outcome.kind, 'success');
      assert.equal(seen.length, 2);
      assert.equal(seen[0]?.authorization, `Bearer ${SECRET}`);
      assert.equal(seen[1]?.authorization, undefined);
    } finally {
      relay.closeAllConnections();
      await new Promise((resolve) => relay.close(resolve));
    }
  });
});

describe('openai error classification', () => {
  // Only retry-after-ms and retry-after are retry instructions: they are all the official SDK's
  // retryRequest reads (openai-node src/client.ts), and it ignores them past 60 s.
  it('reads retry-after-ms, then retry-after, and nothing else as a retry instruction', () => {
    assert.equal(openAIRetryAfterMs(headers({ 'retry-after-ms': '1250', 'retry-after': '2' })), 1250);
    assert.equal(openAIRetryAfterMs(headers({ 'retry-after': '2' })), 2000);
    assert.equal(openAIRetryAfterMs(headers({ 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' })), 0);
    assert.equal(openAIRetryAfterMs(headers({ 'x-ratelimit-reset-requests': '6m0s' })), undefined);
    assert.equal(openAIRetryAfterMs(headers({})), undefined);
  });

  it('does not wait for a rate limit to refill after a 5xx', () => {
    const refill = {
      'x-ratelimit-limit-requests': '500',
      'x-ratelimit-remaining-requests': '499',
      'x-ratelimit-reset-requests': '6m0s',
      'x-ratelimit-reset-tokens': '1m30.5s',
    };
    for (const status of [500, 502, 503]) {
      const outcome = classifyOpenAIError(
        status,
        '{"error":{"message":"boom","type":"server_error"}}',
        headers(refill),
      );
      assert.deepEqual(outcome, { kind: 'transient', message: `openai ${status}: boom` });
    }
    const hinted = classifyOpenAIError(503, 'overloaded', headers({ ...refill, 'retry-after': '2' }));
    assert.equal(hinted.kind === 'transient' ? hinted.retryAfterMs : -1, 2000);
    const tooLong = classifyOpenAIError(503, 'overloaded', headers({ 'retry-after': '3600' }));
    assert.equal(tooLong.kind === 'transient' ? tooLong.retryAfterMs : -1, undefined);
  });

  it('explains a 429 without retry-after by the limit that ran out', () => {
    const limited = (values: Record<string, string>) => {
      const outcome = classifyOpenAIError(429, '{"error":{"code":"rate_limit_exceeded"}}', headers(values));
      assert.equal(outcome.kind, 'rate_limited');
      return outcome.kind === 'rate_limited' ? outcome.retryAfterMs : -1;
    };
    assert.equal(
      limited({ 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1m30.5s' }),
      90_500,
    );
    assert.equal(
      limited({
        'x-ratelimit-remaining-requests': '5',
        'x-ratelimit-remaining-tokens': '0',
        'x-ratelimit-reset-requests': '1s',
        'x-ratelimit-reset-tokens': '12ms',
      }),
      12,
    );
    assert.equal(
      limited({ 'x-ratelimit-remaining-requests': '5', 'x-ratelimit-reset-requests': '6m0s' }),
      undefined,
      'a limit with room left says nothing about this 429',
    );
    assert.equal(
      limited({
        'retry-after': '3',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '6m0s',
      }),
      3000,
    );
  });

  it('rests a key whose quota is exhausted instead of failing the images', () => {
    const outcome = classifyOpenAIError(
      429,
      JSON.stringify({
        error: {
          message: 'You exceeded your current quota',
          type: 'insufficient_quota',
          code: 'insufficient_quota',
        },
      }),
      headers({}),
    );
    assert.equal(outcome.kind, 'rate_limited');
    assert.equal(outcome.retryAfterMs, 15 * 60_000);
  });

  it('treats moderation_blocked like content_policy_violation', () => {
    const outcome = classifyOpenAIError(
      400,
      JSON.stringify({
        error: { message: 'blocked', type: 'image_generation_user_error', code: 'moderation_blocked' },
      }),
      headers({}),
    );
    assert.deepEqual(
      [outcome.kind, outcome.kind === 'permanent' ? outcome.reason : ''],
      ['permanent', 'refused'],
    );
  });
});
