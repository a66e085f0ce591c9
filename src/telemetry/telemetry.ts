import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from '../config/load.ts';
import { coerceError } from '../errors.ts';
import type { Queryable } from '../store/db.ts';
import { recordProviderCall, type ProviderCallRecord } from '../store/provider-calls.ts';
import { pendingDeliveries } from '../store/webhooks.ts';
import { firingAlerts } from '../store/alerts.ts';
import { registerDbMetrics, type ExtraGaugeSpec } from './db-metrics.ts';
import { registerMemoryMetrics } from './memory.ts';

/**
 * What the running parts report as it happens. Process-local series (provider calls, scheduler
 * passes, webhook and alert deliveries) count what this process did: sum them across processes.
 * Provider calls are also logged to the database for the admin view and the alert rules.
 */
export interface Telemetry {
  readonly registry: Registry;
  providerCall(call: ProviderCallRecord): void;
  schedulerPass(seconds: number): void;
  webhookDelivery(outcome: 'delivered' | 'retry' | 'failed'): void;
  alertNotification(channel: string, outcome: 'delivered' | 'retry' | 'failed'): void;
  /** Reads the database-derived series; call before `registry.metrics()`. */
  refreshDbMetrics(q: Queryable): Promise<void>;
}

export function createTelemetry(
  db: Queryable,
  config: Config,
  log: Logger,
  extras: ExtraGaugeSpec[] = [],
): Telemetry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'darkroom_' });
  registerMemoryMetrics(registry);
  const callSeconds = new Histogram({
    name: 'darkroom_provider_call_duration_seconds',
    help: 'Latency of provider calls made by this process, by provider and outcome.',
    labelNames: ['provider', 'outcome'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
    registers: [registry],
  });
  const calls = new Counter({
    name: 'darkroom_provider_calls_total',
    help: 'Provider calls made by this process, by provider, key and outcome class.',
    labelNames: ['provider', 'key', 'outcome'],
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'darkroom_provider_rate_limited_total',
    help: '429 answers received by this process, by provider and key.',
    labelNames: ['provider', 'key'],
    registers: [registry],
  });
  const passSeconds = new Histogram({
    name: 'darkroom_scheduler_pass_duration_seconds',
    help: 'Duration of the leader’s admission passes in this process.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const webhooks = new Counter({
    name: 'darkroom_webhook_deliveries_total',
    help: 'Task webhook delivery attempts by this process, by outcome (delivered, retry, failed).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const alertNotifications = new Counter({
    name: 'darkroom_alert_notifications_total',
    help: 'Alert notification attempts by this process, by channel type and outcome.',
    labelNames: ['channel', 'outcome'],
    registers: [registry],
  });
  const dbMetrics = registerDbMetrics(registry, config, [
    {
      name: 'darkroom_webhook_deliveries_pending',
      help: 'Task webhook deliveries waiting to be sent or retried.',
      read: async (q) => [{ labels: {}, value: await pendingDeliveries(q) }],
    },
    {
      name: 'darkroom_alerts_firing',
      help: 'Alerts firing now, by rule.',
      read: async (q) =>
        Object.entries(
          (await firingAlerts(q)).reduce<Record<string, number>>(
            (m, a) => ({ ...m, [a.rule]: (m[a.rule] ?? 0) + 1 }),
            {},
          ),
        ).map(([rule, value]) => ({ labels: { rule }, value })),
    },
    ...extras,
  ]);
  return {
    registry,
    providerCall(call) {
      const labels = { provider: call.provider, key: call.keyId, outcome: call.outcome };
      calls.inc(labels);
      callSeconds.observe({ provider: call.provider, outcome: call.outcome }, call.latencyMs / 1000);
      if (call.outcome === 'rate_limited') rateLimited.inc({ provider: call.provider, key: call.keyId });
      void recordProviderCall(db, call).catch((error: unknown) =>
        log.warn({ err: coerceError(error) }, 'provider call not logged'),
      );
    },
    schedulerPass(seconds) {
      passSeconds.observe(seconds);
    },
    webhookDelivery(outcome) {
      webhooks.inc({ outcome });
    },
    alertNotification(channel, outcome) {
      alertNotifications.inc({ channel, outcome });
    },
    refreshDbMetrics: (q) => dbMetrics.refresh(q),
  };
}
