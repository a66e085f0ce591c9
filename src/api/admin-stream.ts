import type { ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { createWakeup } from '../scheduler/wakeup.ts';
import { Channels } from '../store/db.ts';
import { collectSeries, type SeriesView } from '../telemetry/series.ts';
import { collectStats, type StatsView } from '../telemetry/stats.ts';
import { callerOf } from './caller.ts';
import { leaveInFlight } from './inflight-limit.ts';
import { admitStream } from './stream-limit.ts';

/** At most one stats snapshot a second, however busy the queue; at least one every 5 s. */
const MIN_GAP_MS = 1000;
const MAX_GAP_MS = 5000;
/** The hour's per-minute series moves slowly and costs a range scan: every 15 s. */
const SERIES_EVERY_MS = 15_000;

interface Client {
  raw: ServerResponse;
  seq: number;
}

interface Hub {
  clients: Set<Client>;
  wake(): void;
  stats?: StatsView;
  series?: SeriesView;
}

// One loop per running app (its Context): every dashboard open on this process shares each read.
const hubs = new WeakMap<Context, Hub>();

function send(client: Client, event: string, data: unknown): void {
  // A client that is not keeping up skips snapshots (the next one supersedes them) instead of
  // buffering them in this process.
  if (client.raw.writableNeedDrain || client.raw.writableEnded) return;
  client.raw.write(`id: ${++client.seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function broadcast(hub: Hub, event: string, data: unknown): void {
  for (const client of hub.clients) send(client, event, data);
}

/**
 * The loop behind every admin stream of this process: runs while at least one is open. It reads
 * the stats when a task changes (NOTIFY on the task channel), no more than once per MIN_GAP_MS
 * and no less than once per MAX_GAP_MS, and the series every SERIES_EVERY_MS.
 */
async function runHub(ctx: Context, hub: Hub, log: FastifyRequest['log']): Promise<void> {
  const wakeup = createWakeup();
  hub.wake = () => wakeup.wake();
  const unlisten = await ctx.db.listen(Channels.task, () => wakeup.wake());
  let seriesAt = 0;
  try {
    while (hub.clients.size > 0) {
      try {
        hub.stats = await collectStats(ctx.db, ctx.config);
        broadcast(hub, 'stats', hub.stats);
        if (Date.now() - seriesAt >= SERIES_EVERY_MS) {
          hub.series = await collectSeries(ctx.db);
          seriesAt = Date.now();
          broadcast(hub, 'series', hub.series);
        }
      } catch (error) {
        const err = coerceError(error);
        log.warn({ err }, 'admin stream read failed');
        broadcast(hub, 'error', { code: 'stats_unavailable', message: err.message });
      }
      await new Promise((resolve) => setTimeout(resolve, MIN_GAP_MS));
      await wakeup.sleep(MAX_GAP_MS - MIN_GAP_MS);
    }
  } finally {
    hubs.delete(ctx);
    await unlisten().catch(() => {});
  }
}

/**
 * `GET /v1/admin/stream`: Server-Sent Events for the dashboard's overview. `stats` events carry
 * what `GET /v1/admin/stats` answers, `series` events what `GET /v1/admin/stats/series` answers;
 * a new stream gets the latest of both at once. Admin scope, counted against the same caps as
 * task streams (src/api/stream-limit.ts), per admin key.
 *
 * The page reads it with fetch() and a streaming body rather than EventSource: EventSource
 * cannot send an Authorization header, and the issue forbids the key in a URL. A signed
 * short-lived stream token minted by a POST would work too, but would be a second credential
 * to mint, expire and revoke with the key; fetch sends the same Bearer header as every other
 * call the page makes, and the browser still parses nothing but text/event-stream.
 */
export async function streamAdminStats(
  ctx: Context,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const release = admitStream(ctx, `admin:${callerOf(request).keyId ?? 'auth-off'}`);
  leaveInFlight(request);
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  const client: Client = { raw, seq: 0 };
  let hub = hubs.get(ctx);
  const starting = !hub;
  if (!hub) {
    hub = { clients: new Set(), wake: () => {} };
    hubs.set(ctx, hub);
  }
  hub.clients.add(client);
  if (!starting) hub.wake();
  if (hub.stats) send(client, 'stats', hub.stats);
  if (hub.series) send(client, 'series', hub.series);
  const mine = hub;
  await new Promise<void>((resolve) => {
    const done = () => {
      mine.clients.delete(client);
      release();
      resolve();
    };
    request.raw.on('close', done);
    raw.on('close', done);
    if (starting)
      runHub(ctx, mine, request.log).catch((error: unknown) =>
        request.log.warn({ err: coerceError(error) }, 'admin stream loop ended'),
      );
  });
}

/**
 * Ends every admin stream of this app on close (Fastify's close() waits for open connections,
 * so an open dashboard would hold it up), each with a last `closing` event as task streams get.
 */
export function endAdminStreams(app: FastifyInstance, ctx: Context): void {
  app.addHook('preClose', async () => {
    const hub = hubs.get(ctx);
    if (!hub) return;
    for (const client of hub.clients) {
      send(client, 'closing', { reason: 'the server is shutting down; reconnect' });
      client.raw.end();
    }
    hub.clients.clear();
    hub.wake();
  });
}
