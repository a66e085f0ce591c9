import type { Context } from '../context.ts';
import { coerceError } from '../errors.ts';
import { compactCounters } from '../store/counters.ts';
import { pruneProviderCalls } from '../store/provider-calls.ts';
import { createAlertEngine } from './engine.ts';

const PROVIDER_CALLS_KEEP_MS = 60 * 60_000; // 1 h: the longest window any view or rule reads
const PRUNE_EVERY_MS = 60_000;

export interface LeaderLoopHandle {
  /** Runs one pass now (tests). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

export interface LeaderLoopOptions {
  isLeader: () => boolean;
  intervalMs: number;
  /** Wall clock for the loop's own pacing (tests inject one). */
  nowMs?: () => number;
}

/**
 * Operations work that only the scheduler leader does, apart from admission: folding the
 * statistics counters, pruning the provider call log, evaluating the alert rules and sending
 * their notifications. Standbys run the timer but skip.
 */
export function startLeaderLoop(ctx: Context, options: LeaderLoopOptions): LeaderLoopHandle {
  const nowMs = options.nowMs ?? Date.now;
  let lastPruneMs = 0;
  // The first evaluation waits one interval: workers starting alongside have registered by then.
  let lastAlertsMs = nowMs();
  const alerts = createAlertEngine(ctx);
  let stopped = false;
  let running: Promise<void> = Promise.resolve();

  async function pass(): Promise<void> {
    if (!options.isLeader()) return;
    await compactCounters(ctx.db);
    if (nowMs() - lastPruneMs >= PRUNE_EVERY_MS) {
      lastPruneMs = nowMs();
      await pruneProviderCalls(ctx.db, PROVIDER_CALLS_KEEP_MS);
    }
    if (!ctx.config.alerts.enabled) return;
    if (nowMs() - lastAlertsMs >= ctx.config.alerts.evaluateEveryMs) {
      lastAlertsMs = nowMs();
      await alerts.evaluate();
    }
    await alerts.deliver();
  }

  function tick(): Promise<void> {
    running = running
      .then(pass)
      .catch((error: unknown) => ctx.log.warn({ err: coerceError(error) }, 'leader operations pass failed'));
    return running;
  }

  const timer = setInterval(() => {
    if (!stopped) void tick();
  }, options.intervalMs);
  timer.unref();

  return {
    tick,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
