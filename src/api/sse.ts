import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import { estimateTask } from '../pipeline/estimate.ts';
import { createWakeup } from '../scheduler/wakeup.ts';
import { Channels } from '../store/db.ts';
import { eventsAfter, lastEventId } from '../store/events.ts';
import { getTask, type TaskRow } from '../store/tasks.ts';
import { viewOf } from './views.ts';

const POLL_MS = 1000; // queue positions move without an event on this task
const KEEPALIVE_MS = 15_000;

function isFinal(state: TaskRow['state']): boolean {
  return state !== 'queued' && state !== 'running';
}

/**
 * Server-Sent Events for one task: `state`, `stage`, `progress` and `position` events, each
 * sent when its value changes and carrying the whole status, and `step_progress` events
 * (fraction of one running provider call, for providers that report it); the stream ends after the final
 * `state` event (whose data is the full task, images included). NOTIFY wakes the stream at
 * once; a slow poll covers position changes and lost notifications.
 */
export async function streamTaskEvents(
  ctx: Context,
  request: FastifyRequest,
  reply: FastifyReply,
  task: TaskRow,
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
  const wakeup = createWakeup();
  const unlisten = await ctx.db.listen(Channels.task, (id) => {
    if (id === task.id) wakeup.wake();
  });
  request.raw.on('close', () => {
    closed = true;
    wakeup.wake();
  });
  const keepalive = setInterval(() => raw.write(': keepalive\n\n'), KEEPALIVE_MS);
  let seq = 0;
  const send = (event: string, data: unknown) => {
    raw.write(`id: ${++seq}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
  let last: { state: string; stage: string | null; progress: string; position: number } | undefined;
  let lastEvent = await lastEventId(ctx.db, task.id);
  try {
    while (!closed) {
      // Provider-side progress of running calls (ComfyUI sampler steps) is passed on as it comes.
      for (const event of await eventsAfter(ctx.db, task.id, lastEvent)) {
        lastEvent = event.id;
        if (event.type === 'step_progress') send('step_progress', event.data);
      }
      const current = await getTask(ctx.db, task.id);
      if (!current) break;
      if (isFinal(current.state)) {
        send('state', await viewOf(ctx, request, current));
        break;
      }
      const estimate = await estimateTask(ctx.db, ctx.config, current);
      const status = {
        id: current.id,
        state: current.state,
        stage: current.stage,
        progress: { done: current.images_done, failed: current.images_failed, total: current.images_total },
        position: estimate.position,
        eta_seconds: estimate.eta_seconds,
      };
      const progressKey = `${current.images_done}/${current.images_failed}`;
      if (!last || last.state !== current.state) send('state', status);
      if (!last || last.stage !== current.stage) send('stage', status);
      if (!last || last.progress !== progressKey) send('progress', status);
      if (!last || last.position !== estimate.position) send('position', status);
      last = {
        state: current.state,
        stage: current.stage,
        progress: progressKey,
        position: estimate.position,
      };
      await wakeup.sleep(POLL_MS);
    }
  } catch (error) {
    request.log.warn({ err: error }, 'SSE stream failed');
  } finally {
    clearInterval(keepalive);
    await unlisten();
    raw.end();
  }
}
