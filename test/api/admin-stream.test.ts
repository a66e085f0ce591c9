import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createApiKey } from '../../src/api/auth/manage.ts';
import type { SeriesView } from '../../src/telemetry/series.ts';
import type { StatsView } from '../../src/telemetry/stats.ts';
import { describeEachDb } from '../helpers/db.ts';
import { startTestServer, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const LONG = { timeoutMs: 120_000 };

interface SseEvent {
  event: string;
  data: unknown;
}

/** An open text/event-stream read with fetch, parsed per the SSE format into a growing list. */
function openStream(url: string, key: string) {
  const events: SseEvent[] = [];
  const controller = new AbortController();
  const response = fetch(url, {
    headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' },
    signal: controller.signal,
  });
  const done = (async () => {
    const res = await response;
    if (!res.ok || !res.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of res.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length) events.push({ event, data: JSON.parse(data.join('\n')) });
        }
      }
    } catch (error) {
      if ((error as Error).name !== 'AbortError') throw error;
    }
  })();
  return { events, response, close: () => controller.abort(), done };
}

describeEachDb('admin stream of stats and series (SSE)', (kind) => {
  // API only: submitted tasks stay queued, so the counts the stream reports are known.
  const t = useTestServer(kind, { auth: { enabled: true }, server: { maxEventStreamsPerUser: 2 } }, ['api']);

  it('is for admin keys only', async () => {
    const base = t.server.baseUrl;
    const appKey = (await createApiKey(t.server.ctx.db, 'app', 'stream test app')).key;
    assert.equal((await fetch(`${base}/v1/admin/stream`)).status, 401);
    const app = await fetch(`${base}/v1/admin/stream`, { headers: { authorization: `Bearer ${appKey}` } });
    assert.equal(app.status, 403);
    assert.equal(((await app.json()) as { error: { code: string } }).error.code, 'forbidden');
  });

  it('pushes stats as tasks change and the hour series, within the stream caps', async () => {
    const base = t.server.baseUrl;
    const adminKey = (await createApiKey(t.server.ctx.db, 'admin', 'stream test')).key;
    const appKey = (await createApiKey(t.server.ctx.db, 'app', 'stream test submit')).key;
    const a = openStream(`${base}/v1/admin/stream`, adminKey);
    const res = await a.response;
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const first = await waitFor('a stats event', () => a.events.find((e) => e.event === 'stats'), LONG);
    assert.equal((first.data as StatsView).queued, 0);
    const series = await waitFor('a series event', () => a.events.find((e) => e.event === 'series'), LONG);
    const s = series.data as SeriesView;
    assert.equal(s.bucket_seconds, 60);
    assert.equal((Date.parse(s.to) - Date.parse(s.from)) / 1000 > 59 * 60, true);
    assert.deepEqual(s.queue_wait, []);
    // Nothing submitted yet: every minute of the hour, no plan busy.
    assert.equal(s.queued_by_plan.length, 60);
    assert.equal(s.running_by_plan.length, 60);
    assert.deepEqual(s.queued_by_plan[59]!.plans, {});

    // The same snapshot as GET /v1/admin/stats, fields for fields.
    const polled = (await (
      await fetch(`${base}/v1/admin/stats`, { headers: { authorization: `Bearer ${adminKey}` } })
    ).json()) as StatsView;
    assert.deepEqual(Object.keys(first.data as object).sort(), Object.keys(polled).sort());

    for (const user of ['s-1', 's-2']) {
      const submitted = await fetch(`${base}/v1/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${appKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ user_id: user, type: 'photography', plan: 'free', prompt: 'p' }),
      });
      assert.equal(submitted.status, 202);
    }
    const later = await waitFor(
      'a stats event with both tasks queued',
      () => a.events.find((e) => e.event === 'stats' && (e.data as StatsView).queued === 2),
      LONG,
    );
    assert.equal((later.data as StatsView).by_plan.free!.queued, 2);

    // A second stream of the same key is admitted and starts with the latest snapshot; a third
    // is past server.maxEventStreamsPerUser (2).
    const b = openStream(`${base}/v1/admin/stream`, adminKey);
    assert.equal((await b.response).status, 200);
    const bFirst = await waitFor(
      'the second stream’s first stats',
      () => b.events.find((e) => e.event === 'stats'),
      LONG,
    );
    assert.equal((bFirst.data as StatsView).queued, 2);
    const c = await fetch(`${base}/v1/admin/stream`, { headers: { authorization: `Bearer ${adminKey}` } });
    assert.equal(c.status, 429);
    assert.equal(((await c.json()) as { error: { code: string } }).error.code, 'too_many_streams');

    // Closing one frees its place.
    b.close();
    await b.done;
    const d = await waitFor(
      'a stream admitted again',
      async () => {
        const stream = openStream(`${base}/v1/admin/stream`, adminKey);
        if ((await stream.response).status === 200) return stream;
        stream.close();
        return undefined;
      },
      { ...LONG, intervalMs: 200 },
    );
    d.close();
    a.close();
    await Promise.all([a.done, d.done]);
  });

  it('ends open streams with a closing event when the server stops', async () => {
    const server = await startTestServer(kind, { auth: { enabled: true } }, ['api']);
    const adminKey = (await createApiKey(server.ctx.db, 'admin', 'stream stop')).key;
    const stream = openStream(`${server.baseUrl}/v1/admin/stream`, adminKey);
    await waitFor('a stats event', () => stream.events.find((e) => e.event === 'stats'), LONG);
    // Fastify's close() waits for open connections: stop() returns only because the stream ended.
    await server.stop();
    await stream.done;
    assert.equal(stream.events.at(-1)?.event, 'closing');
  });
});
