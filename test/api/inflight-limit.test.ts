import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

/** A POST whose body never finishes arriving: the request stays in flight until the socket closes. */
function heldRequest(baseUrl: string): Promise<net.Socket> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        'POST /v1/tasks HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"user_id":',
      );
      resolve(socket);
    });
    socket.on('error', reject);
  });
}

async function inFlightGauge(baseUrl: string): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  return Number(/^darkroom_http_requests_in_flight (\S+)$/m.exec(text)?.[1]);
}

describe('server.maxRequestsInFlight', () => {
  let server: TestServer;
  const sockets: net.Socket[] = [];
  before(async () => {
    server = await startTestServer('pglite', { server: { maxRequestsInFlight: 2 } }, ['api']);
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await server.stop();
  });

  it('answers 503 server_busy with Retry-After past the cap, not counting event streams or health checks', async () => {
    const base = server.baseUrl;
    const submitted = await fetch(`${base}/v1/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user_id: 'held', type: 'photography', plan: 'free' }),
    });
    assert.equal(submitted.status, 202);
    const { id } = (await submitted.json()) as { id: string };
    // An open event stream is not a request in flight (server.maxEventStreams caps those).
    const stream = new AbortController();
    const events = await fetch(`${base}/v1/tasks/${id}/events`, { signal: stream.signal });
    assert.equal(events.status, 200);
    assert.equal(await inFlightGauge(base), 0);

    sockets.push(await heldRequest(base), await heldRequest(base));
    await waitFor('the two held requests to be counted', async () => (await inFlightGauge(base)) === 2);

    const refused = await fetch(`${base}/v1/tasks?limit=1`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'server_busy');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    assert.equal((await fetch(`${base}/readyz`)).status, 200);

    // A client that goes away frees its place.
    sockets[0]!.destroy();
    await waitFor('the closed request to leave the count', async () => (await inFlightGauge(base)) === 1);
    assert.equal((await fetch(`${base}/v1/tasks?limit=1`)).status, 200);
    stream.abort();
  });
});
