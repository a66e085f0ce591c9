import { request } from 'undici';
import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import {
  applyEvaluation,
  claimDueNotifications,
  countLiveWorkers,
  longestRunningTask,
  markNotification,
  providerWindow,
} from '../store/alerts.ts';
import { readCounters } from '../store/counters.ts';
import { workerStaleMs } from '../telemetry/stats.ts';
import { accepted, formatAlert, type ChannelType } from './formats.ts';
import { evaluateRules, type AlertSnapshot } from './rules.ts';

export interface ChannelConfig {
  name: string;
  type: ChannelType;
  url: string;
  secret: string | undefined;
}

export interface AlertEngine {
  /** Reads the installation, evaluates the rules and records firings and resolutions. */
  evaluate(): Promise<{ fired: number; resolved: number }>;
  /** Sends the notifications that are due; returns how many were sent successfully. */
  deliver(): Promise<number>;
}

export function channelsOf(
  ctx: Pick<Context, 'config'>,
  env: NodeJS.ProcessEnv = process.env,
): ChannelConfig[] {
  return ctx.config.alerts.channels.map((c, i) => ({
    name: c.name ?? `${c.type}-${i + 1}`,
    type: c.type,
    url: c.url,
    secret: c.secret?.startsWith('env:') ? env[c.secret.slice(4)] : c.secret,
  }));
}

/** The alert rules against the database, with the clock injected (tests move it). */
export function createAlertEngine(ctx: Context, now: () => Date = () => new Date()): AlertEngine {
  const { db, config, log } = ctx;
  const a = config.alerts;
  const channels = channelsOf(ctx);

  async function snapshot(at: Date): Promise<AlertSnapshot> {
    const [counters, running, errorWindow, rateLimitWindow, liveWorkers] = await Promise.all([
      readCounters(db, ['tasks_active']),
      longestRunningTask(db),
      providerWindow(db, at, a.rules.providerErrorRate.windowSeconds),
      providerWindow(db, at, a.rules.rateLimitRate.windowSeconds),
      countLiveWorkers(db, at, workerStaleMs(config)),
    ]);
    return {
      nowMs: at.getTime(),
      queued: counters.filter((c) => c.labels.state === 'queued').reduce((n, c) => n + c.n, 0),
      longestRunning: running ? { taskId: running.id, startedMs: running.started_at.getTime() } : undefined,
      errorWindow,
      rateLimitWindow,
      liveWorkers,
    };
  }

  async function send(
    type: ChannelType,
    channel: ChannelConfig,
    kind: 'firing' | 'resolved',
    alert: Parameters<typeof formatAlert>[2]['alert'],
  ): Promise<string | undefined> {
    const out = formatAlert(type, channel, { kind, alert }, now().getTime());
    try {
      const res = await request(out.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'darkroom-alerts' },
        body: out.body,
        headersTimeout: a.timeoutMs,
        bodyTimeout: a.timeoutMs,
      });
      return accepted(type, res.statusCode, await res.body.text());
    } catch (error) {
      return coerceError(error).message;
    }
  }

  return {
    async evaluate() {
      const at = now();
      const conditions = evaluateRules(a.rules, await snapshot(at));
      const result = await db.transaction((tx) => applyEvaluation(tx, at, conditions, channels));
      for (const f of result.fired) log.warn({ rule: f.rule, key: f.key }, `alert firing: ${f.summary}`);
      for (const r of result.resolved) log.info({ rule: r.rule, key: r.key }, `alert resolved: ${r.summary}`);
      return { fired: result.fired.length, resolved: result.resolved.length };
    },
    async deliver() {
      let sent = 0;
      for (const n of await claimDueNotifications(db, now(), 100, a.timeoutMs * 2 + 5_000)) {
        const channel = channels.find((c) => c.name === n.channel);
        if (!channel) {
          await markNotification(db, n.id, {
            delivered: false,
            error: 'channel no longer configured',
            retryAt: undefined,
          });
          continue;
        }
        const error = await send(channel.type, channel, n.kind, n.alert);
        if (error === undefined) {
          await markNotification(db, n.id, { delivered: true });
          ctx.telemetry?.alertNotification(channel.type, 'delivered');
          sent++;
          continue;
        }
        const attempts = n.attempts;
        const retryAt =
          attempts >= a.maxAttempts
            ? undefined
            : new Date(now().getTime() + a.retryBaseMs * 2 ** (attempts - 1));
        await markNotification(db, n.id, { delivered: false, error, retryAt });
        ctx.telemetry?.alertNotification(channel.type, retryAt ? 'retry' : 'failed');
        log.warn({ channel: channel.name, attempts, error }, 'alert notification not delivered');
      }
      return sent;
    },
  };
}
