/**
 * The provider simulator's latency is the time until the answer, generation included: the answer
 * is produced from the request's arrival and sent at the later of the latency and the production.
 * The latency is a held sleep and the production a deferred, so no clock decides anything here.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { json, type Reply } from '../../src/providers/fake-server/http.ts';
import { runGeneration, SimProvider, type SimContext } from '../../src/providers/fake-server/sim-provider.ts';
import { waitFor } from '../helpers/wait.ts';
import { deferred } from '../helpers/worker.ts';

interface Harness {
  url: string;
  provider: SimProvider;
  sleeps: () => number;
  produced: () => number;
  closed: () => number;
  releaseLatency: () => void;
  answer: (reply: Reply | Error) => void;
}

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  server = undefined;
});

async function harness(): Promise<Harness> {
  const latency = deferred();
  const production = deferred<Reply | Error>();
  let sleeps = 0;
  let produced = 0;
  let closed = 0;
  const ctx: SimContext = {
    now: Date.now,
    sleep: async () => {
      sleeps += 1;
      await latency.promise;
    },
    trickleMs: 10,
    fileTtlMs: 60_000,
    imageSize: 16,
    files: new Map(),
  };
  const provider = new SimProvider({
    name: 'p',
    keys: [{ id: 'k', rpm: 1000, concurrency: 5 }],
    latencyMs: 300,
    jitterMs: 0,
    errorRate: 0,
  });
  const protocol = {
    unauthorized: () => json(401, { error: 'unauthorized' }),
    rateLimited: () => json(429, { error: 'rate limited' }),
    serverError: (status: 500 | 503) => json(status, { error: 'server error' }),
    malformed: () => json(200, { broken: true }),
  };
  server = createServer((req, res) => {
    res.once('close', () => (closed += 1));
    void runGeneration({
      ctx,
      provider,
      req,
      res,
      presentedKey: 'k',
      protocol,
      produce: async () => {
        produced += 1;
        const reply = await production.promise;
        if (reply instanceof Error) throw reply;
        return reply;
      },
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}/`,
    provider,
    sleeps: () => sleeps,
    produced: () => produced,
    closed: () => closed,
    releaseLatency: () => latency.resolve(),
    answer: (reply) => production.resolve(reply),
  };
}

describe('provider simulator latency', () => {
  it('produces the answer during the latency and sends it when both are done', async () => {
    const h = await harness();
    let settled = false;
    const response = fetch(h.url, { method: 'POST' }).finally(() => (settled = true));
    await waitFor('the answer to be produced while the latency runs', () => h.produced() === 1);
    assert.equal(h.sleeps(), 1, 'the latency started too');
    h.answer(json(200, { images: 2 }));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'answered before its latency');
    h.releaseLatency();
    const answered = await response;
    assert.equal(answered.status, 200);
    assert.deepEqual(await answered.json(), { images: 2 });
  });

  it('waits for a production slower than the latency', async () => {
    const h = await harness();
    h.releaseLatency();
    const response = fetch(h.url, { method: 'POST' });
    await waitFor('the latency to be waited out', () => h.sleeps() === 1 && h.produced() === 1);
    h.answer(json(200, { late: true }));
    assert.deepEqual(await (await response).json(), { late: true });
  });

  it('produces nothing for server errors and malformed answers, which keep their own replies', async () => {
    const h = await harness();
    h.releaseLatency();
    h.provider.faults.add(['http503', 'malformed_json']);
    assert.equal((await fetch(h.url, { method: 'POST' })).status, 503);
    assert.deepEqual(await (await fetch(h.url, { method: 'POST' })).json(), { broken: true });
    assert.equal(h.produced(), 0);
  });

  it('survives a client that leaves during the latency while production fails', async () => {
    const h = await harness();
    const client = new AbortController();
    const response = fetch(h.url, { method: 'POST', signal: client.signal }).catch(() => 'aborted');
    await waitFor('the request to arrive', () => h.produced() === 1);
    client.abort();
    assert.equal(await response, 'aborted');
    await waitFor('the server to see the client leave', () => h.closed() === 1);
    // Nothing awaits this production any more: its failure must not be an unhandled rejection.
    h.answer(new Error('render failed'));
    h.releaseLatency();
    for (let turn = 0; turn < 3; turn += 1) await new Promise((resolve) => setImmediate(resolve));
  });
});
