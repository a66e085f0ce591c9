/**
 * Clients that hold resources (issue 9, item 14): slow or silent sockets are closed by the
 * request and header timeouts, and event streams are capped per user and per process, so
 * neither can stall the server (`/healthz` keeps answering).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { DB_KINDS } from '../helpers/db.ts';
import { parseResponse } from '../helpers/raw-http.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

/** Opens a socket, writes `head`, then stays silent; resolves with what the server sent once it closes the socket. */
function silentClient(baseUrl: string, head: string): { closed: Promise<string>; destroy: () => void } {
  const url = new URL(baseUrl);
  const socket = net.connect(Number(url.port), url.hostname, () => socket.write(head));
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  socket.on('error', () => undefined);
  const closed = new Promise<string>((resolve) => socket.on('close', () => resolve(text)));
  return { closed, destroy: () => socket.destroy() };
}

function withGuard<T>(what: string, work: Promise<T>, guardMs = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still open after ${guardMs} ms`)), guardMs);
  });
  return Promise.race([work, guard]).finally(() => clearTimeout(timer));
}

// HTTP behaviour, not storage: one database kind is enough (PostgreSQL when this run has one).
const kind = DB_KINDS.at(-1)!;

describe('slow clients', () => {
  const t = useTestServer(kind, { server: { requestTimeoutMs: 400, headersTimeoutMs: 200 } });

  it('200 slow-header and slow-body sockets are closed by the server, /healthz answering meanwhile', async () => {
    const base = t.server.baseUrl;
    const clients = [
      ...Array.from({ length: 100 }, () => silentClient(base, 'POST /v1/tasks HTTP/1.1\r\nHost: x\r\n')),
      ...Array.from({ length: 100 }, () =>
        silentClient(
          base,
          'POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"user_id":',
        ),
      ),
    ];
    try {
      assert.equal((await getJson(base, '/healthz')).status, 200);
      const answers = await withGuard('slow sockets', Promise.all(clients.map((c) => c.closed)));
      const sent = answers.filter((a) => a.length > 0);
      assert.ok(sent.length > 0, 'no socket got an answer before it was closed');
      for (const answer of sent) {
        const res = parseResponse(answer);
        assert.equal(res.status, 408, answer);
        assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'request_timeout');
      }
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});

describe('event stream cap', () => {
  const t = useTestServer(kind, {
    server: { maxEventStreams: 3, maxEventStreamsPerUser: 2 },
    providers: { main: { sim: { latencyMs: 600_000, jitterMs: 0 } } },
  });

  it('refuses streams past the per-user (429) and the per-process (503) cap, and admits again once one closes', async () => {
    const base = t.server.baseUrl;
    const task = async (user: string) => {
      const res = await postJson(base, '/v1/tasks', { user_id: user, type: 'photography', plan: 'free' });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      return res.body.id as string;
    };
    const [a, b, c] = [await task('ann'), await task('bob'), await task('cid')];
    const open: AbortController[] = [];
    const stream = async (id: string) => {
      const abort = new AbortController();
      const res = await fetch(`${base}/v1/tasks/${id}/events`, { signal: abort.signal });
      if (res.status === 200) {
        open.push(abort);
        // The first event arrives: the stream is running, not just accepted.
        const reader = res.body!.getReader();
        const first = await reader.read();
        assert.match(Buffer.from(first.value!).toString(), /event: /);
        return { status: 200, code: undefined, abort };
      }
      const body = (await res.json()) as { error: { code: string } };
      return { status: res.status, code: body.error.code, retryAfter: res.headers.get('retry-after'), abort };
    };
    try {
      const first = await stream(a);
      assert.equal(first.status, 200);
      assert.equal((await stream(a)).status, 200);
      const third = await stream(a);
      assert.deepEqual([third.status, third.code], [429, 'too_many_streams']);
      assert.equal((await stream(b)).status, 200);
      const busy = await stream(c);
      assert.deepEqual([busy.status, busy.code], [503, 'server_busy']);
      assert.equal((await getJson(base, '/healthz')).status, 200);
      first.abort.abort();
      await waitFor('a stream slot to free up', async () =>
        (await stream(c)).status === 200 ? true : undefined,
      );
    } finally {
      for (const abort of open) abort.abort();
    }
  });
});
