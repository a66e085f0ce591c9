import { Agent, buildConnector, request } from 'undici';
import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { createGuardedConnector, systemLookup, type HostLookup } from '../inputs/guarded-connector.ts';
import { createWakeup } from '../scheduler/wakeup.ts';
import { eventCreatedAt } from '../store/events.ts';
import { getTask } from '../store/tasks.ts';
import {
  claimDeliveries,
  fixPayload,
  markAttemptFailed,
  markDelivered,
  type DeliveryRow,
} from '../store/webhooks.ts';
import { nextRetryMs } from './backoff.ts';
import { signWebhook } from './signing.ts';
import { webhookAddressPolicy } from './url-policy.ts';
import { webhookTaskView } from './view.ts';

export const WEBHOOK_CHANNEL = 'darkroom_webhook';

export interface DelivererHandle {
  stop(): Promise<void>;
}

export interface DelivererOptions {
  secret: string;
  /** DNS resolution (tests inject one). */
  lookup?: HostLookup;
}

/**
 * Sends task webhooks from the outbox: claims due deliveries (any worker process may), POSTs
 * each signed body, and records the outcome fenced by the claim's token. A process killed
 * mid-send leaves the claim to lapse; another process sends the same message again.
 */
export async function startDeliverer(ctx: Context, options: DelivererOptions): Promise<DelivererHandle> {
  const { db, config, log } = ctx;
  const w = config.webhooks;
  const wakeup = createWakeup();
  const unlisten = await db.listen(WEBHOOK_CHANNEL, () => wakeup.wake());
  const agent = new Agent({
    connect: createGuardedConnector(
      webhookAddressPolicy(config),
      options.lookup ?? systemLookup,
      buildConnector({ timeout: w.timeoutMs }),
    ),
    headersTimeout: w.timeoutMs,
    bodyTimeout: w.timeoutMs,
  });
  let stopped = false;
  const inFlight = new Set<Promise<void>>();

  async function bodyOf(d: DeliveryRow): Promise<string> {
    if (d.payload !== null) return d.payload;
    const task = await getTask(db, d.task_id);
    const createdAt = await eventCreatedAt(db, d.event_id);
    const payload = JSON.stringify({
      type: d.event_type,
      timestamp: (createdAt ?? new Date()).toISOString(),
      data: task ? await webhookTaskView(ctx, task) : { id: d.task_id },
    });
    return fixPayload(db, d.id, payload);
  }

  async function send(d: DeliveryRow): Promise<void> {
    let status: number | null = null;
    let error: string;
    try {
      const body = await bodyOf(d);
      const headers = signWebhook(options.secret, d.id, Math.floor(Date.now() / 1000), body);
      const res = await request(d.url, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', 'user-agent': 'darkroom-webhooks', ...headers },
        body,
        signal: AbortSignal.timeout(w.timeoutMs),
      });
      status = res.statusCode;
      await res.body.dump().catch(() => {});
      if (status >= 200 && status < 300) {
        if (await markDelivered(db, d.id, d.lease_token, status)) ctx.telemetry?.webhookDelivery('delivered');
        return;
      }
      error = `the receiver answered ${status}`;
    } catch (e) {
      error = coerceError(e).message;
    }
    const retryInMs = nextRetryMs({
      attempts: d.attempts,
      ageMs: Date.now() - d.created_at.getTime(),
      baseMs: w.backoffBaseMs,
      maxMs: w.backoffMaxMs,
      maxAgeMs: w.maxAgeHours * 3_600_000,
      random: ctx.random(),
    });
    if (await markAttemptFailed(db, d.id, d.lease_token, { status, error, retryInMs })) {
      ctx.telemetry?.webhookDelivery(retryInMs === undefined ? 'failed' : 'retry');
      log.info(
        { deliveryId: d.id, taskId: d.task_id, attempts: d.attempts, retryInMs, error },
        'webhook not delivered',
      );
    }
  }

  const loop = (async () => {
    while (!stopped) {
      let claimed: DeliveryRow[] = [];
      try {
        const free = w.concurrency - inFlight.size;
        // The claim outlives the request's own timeout, so a live sender is never overtaken.
        if (free > 0) claimed = await claimDeliveries(db, free, w.timeoutMs * 2 + 5_000);
        for (const d of claimed) {
          const p = send(d)
            .catch((e: unknown) =>
              log.warn({ err: coerceError(e), deliveryId: d.id }, 'webhook attempt failed'),
            )
            .finally(() => {
              inFlight.delete(p);
              wakeup.wake();
            });
          inFlight.add(p);
        }
      } catch (error) {
        log.warn({ err: coerceError(error) }, 'claiming webhook deliveries failed; retrying');
      }
      if (!stopped && claimed.length === 0) await wakeup.sleep(w.pollMs);
    }
  })();

  return {
    async stop() {
      stopped = true;
      wakeup.wake();
      await loop;
      await Promise.all(inFlight);
      await unlisten();
      await agent.close().catch(() => {});
    },
  };
}
