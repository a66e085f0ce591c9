import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import { estimateOf } from '../pipeline/estimate.ts';
import { createWakeup } from '../scheduler/wakeup.ts';
import { Channels } from '../store/db.ts';
import { eventsAfter, lastEventId } from '../store/events.ts';
import { getTaskView, type TaskRow } from '../store/tasks.ts';
import { leaveInFlight } from './inflight-limit.ts';
import { admitStream } from './stream-limit.ts';
import { viewOf } from './views.ts';

const POLL_MS = 1000; // covers lost notifications
const KEEPALIVE_MS = 15_000;

/** Open task streams of each app (its Context): closing the app ends them. */
const openStreams = new WeakMap<Context, Set<() => void>>();

/**
 * Ends every task stream of this app when it closes. Fastify's close() waits for every open
 * connection, a hijacked SSE response included, so without this one connected client kept a
 * SIGTERM'd process from ever reaching the worker's grace logic. Each stream gets a `closing`
 * event first, so a client knows to reconnect elsewhere rather than treat the end as a failure.
 */
export function endTaskStreams(app: FastifyInstance, ctx: Context): void {
  app.addHook('preClose', async () => {
    for (const end of openStreams.get(ctx) ?? []) end();
  });
}

function isFinal(state: TaskRow['state']): boolean {
  return state !== 'queued' && state !== 'running';
}

/**
 * Server-Sent Events for one task: `state`, `stage`, `progress`, `position` and `eta` events,
 * each sent when its value changes and carrying the whole status, and `step_progress` events
 * (fraction of one running provider call, for providers that report it); the stream ends after the final
 * `state` event (whose data is the full task, images included). NOTIFY wakes the stream at
 * once: a change of the task, or a new forecast from the leader (position and ETA are read from
 * it, one row: src/scheduler/forecaster.ts). A slow poll covers lost notifications.
 */
export async function streamTaskEvents(
  ctx: Context,
  request: FastifyRequest,
  reply: FastifyReply,
  task: Pick<TaskRow, 'id' | 'user_id'>,
): Promise<void> {
  const release = admitStream(ctx, task.user_id);
  leaveInFlight(request);
  try {
    await runStream(ctx, request, reply, task);
  } finally {
    release();
  }
}

async function runStream(
  ctx: Context,
  request: FastifyRequest,
  reply: FastifyReply,
  task: Pick<TaskRow, 'id'>,
): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  let closed = false;
  let shuttingDown = false;
  const wakeup = createWakeup();
  let streams = openStreams.get(ctx);
  if (!streams) openStreams.set(ctx, (streams = new Set()));
  const endForShutdown = () => {
    shuttingDown = closed = true;
    wakeup.wake();
  };
  streams.add(endForShutdown);
  const unlistenTask = await ctx.db.listen(Channels.task, (id) => {
    if (id === task.id) wakeup.wake();
  });
  const unlistenForecast = await ctx.db.listen(Channels.forecast, () => wakeup.wake());
  const unlisten = async () => {
    await unlistenTask();
    await unlistenForecast();
  };
  request.raw.on('close', () => {
    closed = true;
    wakeup.wake();
  });
  const keepalive = setInterval(() => raw.write(': keepalive\n\n'), KEEPALIVE_MS);
  let seq = 0;
  const send = (event: string, data: unknown) => {
    raw.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let last:
    | { state: string; stage: string | null; progress: string; position: number; finish: string | null }
    | undefined;
  let lastEvent = await lastEventId(ctx.db, task.id);
  try {
    while (!closed) {
      // Provider-side progress of running calls (ComfyUI sampler steps) is passed on as it comes.
      for (const event of await eventsAfter(ctx.db, task.id, lastEvent)) {
        lastEvent = event.id;
        if (event.type === 'step_progress') send('step_progress', event.data);
      }
      const current = await getTaskView(ctx.db, task.id);
      if (!current) break;
      if (isFinal(current.state)) {
        send('state', await viewOf(ctx, request, current));
        break;
      }
      const estimate = estimateOf(current);
      const status = {
        id: current.id,
        state: current.state,
        stage: current.stage,
        attempt: current.attempt,
        progress: { done: current.images_done, failed: current.images_failed, total: current.images_total },
        ...estimate,
      };
      const progressKey = `${current.images_done}/${current.images_failed}`;
      // The predicted finish moves when a forecast does, not as the clock runs: an `eta` event
      // says the prediction changed (or what it rests on did).
      const finishKey = `${estimate.predicted_finish_at ?? ''}/${estimate.eta_basis ?? ''}/${estimate.forecast_stale}`;
      if (!last || last.state !== current.state) send('state', status);
      if (!last || last.stage !== current.stage) send('stage', status);
      if (!last || last.progress !== progressKey) send('progress', status);
      if (!last || last.position !== estimate.position) send('position', status);
      if (!last || last.finish !== finishKey) send('eta', status);
      last = {
        state: current.state,
        stage: current.stage,
        progress: progressKey,
        position: estimate.position,
        finish: finishKey,
      };
      await wakeup.sleep(POLL_MS);
    }
  } catch (error) {
    request.log.warn({ err: error }, 'SSE stream failed');
  } finally {
    streams.delete(endForShutdown);
    clearInterval(keepalive);
    if (shuttingDown)
      send('closing', { reason: 'the server is shutting down; reconnect to follow the task' });
    await unlisten();
    raw.end();
  }
}
