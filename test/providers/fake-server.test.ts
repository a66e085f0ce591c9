import assert from 'node:assert/strict';
import { waitFor } from '../helpers/wait.ts';
import { after, before, beforeEach, describe, it } from 'node:test';
import sharp from 'sharp';
import {
  startFakeProvider,
  type FakeProviderHandle,
  type FakeStats,
} from '../../src/providers/fake-server/index.ts';

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Answer> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text ? (JSON.parse(text) as unknown) : undefined,
  };
}

function gemini(sim: FakeProviderHandle, provider: string, key: string): Promise<Answer> {
  return post(
    `${sim.url}/p/${provider}/v1beta/models/gemini-2.5-flash-image:generateContent`,
    { contents: [{ parts: [{ text: 'a lighthouse' }] }] },
    { 'x-goog-api-key': key },
  );
}

function openai(
  sim: FakeProviderHandle,
  provider: string,
  key: string,
  body: Record<string, unknown> = {},
  signal?: AbortSignal,
): Promise<Answer> {
  return post(
    `${sim.url}/p/${provider}/v1/images/generations`,
    { model: 'darkroom-sim', prompt: 'a lighthouse', size: '64x64', ...body },
    { authorization: `Bearer ${key}` },
    signal,
  );
}

function retryDelayOf(answer: Answer): string | undefined {
  const details = (answer.body as { error: { details: Array<Record<string, string>> } }).error.details;
  return details.find((detail) => detail['@type']?.endsWith('RetryInfo'))?.retryDelay;
}

describe('fake provider: rpm in a sliding 60 s window', () => {
  let clock = 0;
  let sim: FakeProviderHandle;
  before(async () => {
    sim = await startFakeProvider({
      now: () => clock,
      imageSize: 16,
      providers: [
        {
          name: 'burst',
          keys: [{ id: 'k', rpm: 3, concurrency: 10 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 0,
        },
        {
          name: 'spread',
          keys: [{ id: 'k', rpm: 2, concurrency: 10 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 0,
        },
        { name: 'oa', keys: [{ id: 'k', rpm: 2, concurrency: 10 }], latencyMs: 1, jitterMs: 0, errorRate: 0 },
      ],
    });
  });
  after(() => sim.close());
  beforeEach(async () => {
    clock = 1_000_000;
    await post(`${sim.url}/_sim/reset`, {});
  });

  it('accepts exactly rpm requests per window and says when the next one fits', async () => {
    const statuses = [];
    for (let i = 0; i < 3; i += 1) statuses.push((await gemini(sim, 'burst', 'k')).status);
    assert.deepEqual(statuses, [200, 200, 200]);
    const rejected = await gemini(sim, 'burst', 'k');
    assert.equal(rejected.status, 429);
    assert.equal((rejected.body as { error: { status: string } }).error.status, 'RESOURCE_EXHAUSTED');
    assert.equal(retryDelayOf(rejected), '60s');
    clock += 30_000;
    assert.equal(retryDelayOf(await gemini(sim, 'burst', 'k')), '30s');
    clock += 29_999;
    assert.equal(retryDelayOf(await gemini(sim, 'burst', 'k')), '1s');
    clock += 1; // the first three leave the window exactly 60 s after they were accepted
    for (let i = 0; i < 3; i += 1) assert.equal((await gemini(sim, 'burst', 'k')).status, 200);
    assert.equal((await gemini(sim, 'burst', 'k')).status, 429);
    assert.deepEqual(sim.stats().providers.burst?.keys.k, {
      requests: 10,
      rejected_429: 4,
      max_in_flight: 1,
      max_requests_in_any_60s_window: 3,
    });
  });

  it('slides rather than resetting on minute boundaries', async () => {
    const at = async (offset: number): Promise<number> => {
      clock = 1_000_000 + offset;
      return (await gemini(sim, 'spread', 'k')).status;
    };
    assert.equal(await at(0), 200);
    assert.equal(await at(30_000), 200);
    assert.equal(await at(59_999), 429);
    assert.equal(await at(60_000), 200);
    assert.equal(await at(60_000), 429);
    assert.equal(await at(89_999), 429);
    assert.equal(await at(90_000), 200);
    const stats = sim.stats().providers.spread?.keys.k;
    assert.equal(stats?.max_requests_in_any_60s_window, 2);
    assert.equal(stats?.rejected_429, 3);
  });

  it('answers OpenAI-style 429s with retry-after and x-ratelimit headers', async () => {
    assert.equal((await openai(sim, 'oa', 'k')).status, 200);
    clock += 15_000;
    const second = await openai(sim, 'oa', 'k');
    assert.equal(second.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.equal(second.headers.get('x-ratelimit-reset-requests'), '45s');
    clock += 500;
    const rejected = await openai(sim, 'oa', 'k');
    assert.equal(rejected.status, 429);
    assert.equal(rejected.headers.get('retry-after'), '45');
    assert.equal(rejected.headers.get('retry-after-ms'), '44500');
    assert.equal(rejected.headers.get('x-ratelimit-limit-requests'), '2');
    assert.equal(rejected.headers.get('x-ratelimit-reset-requests'), '44.5s');
    assert.deepEqual(
      (rejected.body as { error: { code: string; type: string } }).error.code,
      'rate_limit_exceeded',
    );
  });
});

describe('fake provider: concurrency, faults, stats', () => {
  let clock = 5_000;
  let sim: FakeProviderHandle;
  before(async () => {
    sim = await startFakeProvider({
      now: () => clock,
      imageSize: 16,
      fileTtlMs: 60_000,
      providers: [
        {
          name: 'slow',
          keys: [{ id: 'k', rpm: 1000, concurrency: 2 }],
          latencyMs: 150,
          jitterMs: 0,
          errorRate: 0,
        },
        {
          name: 'multi',
          keys: [
            { id: 'a', secret: 'secret-a', rpm: 1000, concurrency: 5 },
            { id: 'b', rpm: 1000, concurrency: 5 },
          ],
          latencyMs: 1,
          jitterMs: 1,
          errorRate: 0,
          retryAfterSeconds: 7,
        },
        {
          name: 'flaky',
          keys: [{ id: 'k', rpm: 1000, concurrency: 5 }],
          latencyMs: 1,
          jitterMs: 0,
          errorRate: 1,
          seed: 42,
        },
      ],
    });
  });
  after(() => sim.close());
  beforeEach(async () => {
    await post(`${sim.url}/_sim/reset`, {});
  });

  it('rejects requests over the concurrency limit with 429 and counts max in flight', async () => {
    const answers = await Promise.all(Array.from({ length: 5 }, () => gemini(sim, 'slow', 'k')));
    const statuses = answers.map((answer) => answer.status).sort();
    assert.deepEqual(statuses, [200, 200, 429, 429, 429]);
    assert.equal(retryDelayOf(answers.find((answer) => answer.status === 429) as Answer), '1s');
    assert.equal((await gemini(sim, 'slow', 'k')).status, 200, 'slots are free again once answered');
    assert.deepEqual(sim.stats().providers.slow?.keys.k, {
      requests: 6,
      rejected_429: 3,
      max_in_flight: 2,
      max_requests_in_any_60s_window: 3,
    });
  });

  it('frees the slot of a hanging request when the client gives up', async () => {
    await post(`${sim.url}/_sim/faults`, { provider: 'slow', faults: ['hang', 'hang'] });
    const aborts = [new AbortController(), new AbortController()];
    const hanging = aborts.map((controller) =>
      post(
        `${sim.url}/p/slow/v1/images/generations`,
        { model: 'darkroom-sim', prompt: 'x' },
        { authorization: 'Bearer k' },
        controller.signal,
      ).catch(() => 'aborted'),
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal((await gemini(sim, 'slow', 'k')).status, 429, 'both slots are held by the hanging requests');
    for (const controller of aborts) controller.abort();
    assert.deepEqual(await Promise.all(hanging), ['aborted', 'aborted']);
    // The server sees the disconnects a moment after the client: wait for the slots, not a fixed time.
    await waitFor(
      'the hanging requests to free their slots',
      async () => (await gemini(sim, 'slow', 'k')).status === 200,
    );
  });

  it('identifies keys by secret when set, else by id, and rejects unknown keys in the provider format', async () => {
    assert.equal((await gemini(sim, 'multi', 'secret-a')).status, 200);
    assert.equal(
      (await gemini(sim, 'multi', 'a')).status,
      400,
      'a key with a secret is not reachable by its id',
    );
    assert.equal((await gemini(sim, 'multi', 'b')).status, 200);
    const byQuery = await post(`${sim.url}/p/multi/v1beta/models/m:generateContent?key=secret-a`, {
      contents: [{ parts: [{ text: 'x' }] }],
    });
    assert.equal(byQuery.status, 200, 'Gemini also takes the key as ?key=');
    const unknown = await openai(sim, 'multi', 'nope');
    assert.equal(unknown.status, 401);
    assert.equal((unknown.body as { error: { code: string } }).error.code, 'invalid_api_key');
    const keys = sim.stats().providers.multi?.keys;
    assert.equal(keys?.a?.requests, 2);
    assert.equal(keys?.b?.requests, 1);
  });

  it('applies scripted faults in order, only to the key they name', async () => {
    const queued = await post(`${sim.url}/_sim/faults`, {
      provider: 'multi',
      key: 'b',
      faults: ['http503', 'http429'],
    });
    assert.equal(queued.status, 200);
    assert.equal((await gemini(sim, 'multi', 'secret-a')).status, 200, 'key a is not affected');
    const first = await gemini(sim, 'multi', 'b');
    assert.equal(first.status, 503);
    assert.equal((first.body as { error: { status: string } }).error.status, 'UNAVAILABLE');
    const second = await gemini(sim, 'multi', 'b');
    assert.equal(second.status, 429);
    assert.equal(retryDelayOf(second), '7s');
    assert.equal((await gemini(sim, 'multi', 'b')).status, 200);
    assert.equal(sim.stats().providers.multi?.keys.b?.rejected_429, 1);

    await post(`${sim.url}/_sim/faults`, {
      provider: 'multi',
      faults: ['malformed_json', 'refusal', 'no_image', 'not_an_image', 'http500'],
    });
    const malformed = await fetch(`${sim.url}/p/multi/v1beta/models/m:generateContent`, {
      method: 'POST',
      headers: { 'x-goog-api-key': 'b' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
    });
    assert.equal(malformed.status, 200);
    await assert.rejects(malformed.json());
    const refusal = await gemini(sim, 'multi', 'b');
    assert.equal(
      (refusal.body as { promptFeedback: { blockReason: string } }).promptFeedback.blockReason,
      'SAFETY',
    );
    const noImage = await gemini(sim, 'multi', 'b');
    assert.equal(
      (noImage.body as { candidates: Array<{ finishReason: string }> }).candidates[0]?.finishReason,
      'STOP',
    );
    const notImage = (await openai(sim, 'multi', 'b', { response_format: 'b64_json' })).body as {
      data: Array<{ b64_json: string }>;
    };
    await assert.rejects(sharp(Buffer.from(notImage.data[0]?.b64_json ?? '', 'base64')).metadata());
    assert.equal((await openai(sim, 'multi', 'b')).status, 500);
  });

  it('counts in flight across keys, 429s by cause and the faults still queued', async () => {
    await post(`${sim.url}/_sim/faults`, {
      provider: 'multi',
      key: 'b',
      faults: ['hang', 'http429', 'http429_no_retry_info', 'http500'],
    });
    assert.equal(sim.stats().providers.multi?.totals.faults_queued, 4);
    const abort = new AbortController();
    const hanging = openai(sim, 'multi', 'b', {}, abort.signal).catch(() => 'aborted');
    await waitFor('the hang to be accepted', () => sim.stats().providers.multi?.totals.faults_queued === 3);
    // Two keys busy at once: the hanging call on b and a call on a.
    assert.equal((await gemini(sim, 'multi', 'secret-a')).status, 200);
    const hinted = await openai(sim, 'multi', 'b');
    assert.equal(hinted.status, 429);
    assert.equal(hinted.headers.get('retry-after'), '7');
    const hintless = await openai(sim, 'multi', 'b');
    assert.equal(hintless.status, 429);
    assert.equal(hintless.headers.get('retry-after'), null, 'no retry-after on a hint-less 429');
    assert.equal(hintless.headers.get('retry-after-ms'), null);
    assert.equal(hintless.headers.get('x-ratelimit-reset-requests'), null);
    abort.abort();
    assert.equal(await hanging, 'aborted');
    assert.equal((await openai(sim, 'multi', 'b')).status, 500);
    assert.deepEqual(sim.stats().providers.multi?.totals, {
      max_in_flight: 2,
      rejected: { rpm: 0, concurrency: 0, scripted: 2 },
      faults_queued: 0,
    });
  });

  it('breaks bodies: a truncated answer and a reset connection', async () => {
    await post(`${sim.url}/_sim/faults`, { provider: 'multi', faults: ['truncated', 'reset'] });
    const truncated = await fetch(`${sim.url}/p/multi/v1/images/generations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer b' },
      body: JSON.stringify({ model: 'darkroom-sim', prompt: 'x', size: '64x64' }),
    });
    assert.equal(truncated.status, 200, 'the headers arrive');
    await assert.rejects(truncated.text(), 'the body ends early');
    await assert.rejects(openai(sim, 'multi', 'b'), 'the connection closes before any answer');
    assert.equal((await openai(sim, 'multi', 'b')).status, 200);
    await waitFor('both slots to be free', () => {
      const keys = sim.stats().providers.multi?.keys;
      return keys?.b?.requests === 3;
    });
  });

  it('rejects unknown faults and providers', async () => {
    assert.equal(
      (await post(`${sim.url}/_sim/faults`, { provider: 'multi', faults: ['explode'] })).status,
      400,
    );
    assert.equal(
      (await post(`${sim.url}/_sim/faults`, { provider: 'nobody', faults: ['hang'] })).status,
      400,
    );
  });

  it('fails at errorRate with seeded, reproducible 500/503s', async () => {
    const sequence = async (): Promise<number[]> => {
      const statuses = [];
      for (let i = 0; i < 8; i += 1) statuses.push((await gemini(sim, 'flaky', 'k')).status);
      return statuses;
    };
    const first = await sequence();
    assert.ok(first.every((status) => status === 500 || status === 503));
    assert.ok(first.includes(500) && first.includes(503));
    await post(`${sim.url}/_sim/reset`, {});
    assert.deepEqual(await sequence(), first, 'reset reseeds the generator');
  });

  it('serves url results under /files until they expire', async () => {
    const answer = await openai(sim, 'multi', 'b', { response_format: 'url', n: 2 });
    const urls = (answer.body as { data: Array<{ url: string }> }).data.map((item) => item.url);
    assert.equal(urls.length, 2);
    assert.ok(urls.every((url) => url.startsWith(`${sim.url}/p/multi/files/`)));
    const file = await fetch(urls[0] ?? '');
    assert.equal(file.status, 200);
    assert.equal((await sharp(Buffer.from(await file.arrayBuffer())).metadata()).format, 'png');
    clock += 60_000;
    assert.equal((await fetch(urls[1] ?? '')).status, 404);
  });

  it('reports the same stats over HTTP and clears them on reset', async () => {
    await gemini(sim, 'multi', 'b');
    const overHttp = (await (await fetch(`${sim.url}/_sim/stats`)).json()) as FakeStats;
    assert.deepEqual(overHttp, sim.stats());
    assert.equal(overHttp.providers.multi?.keys.b?.requests, 1);
    await post(`${sim.url}/_sim/faults`, { provider: 'multi', faults: ['http500'] });
    await post(`${sim.url}/_sim/reset`, {});
    assert.equal(sim.stats().providers.multi?.keys.b?.requests, 0);
    assert.equal((await gemini(sim, 'multi', 'b')).status, 200, 'reset dropped the queued fault');
  });
});
