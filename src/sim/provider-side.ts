import type { Config, ResolvedProvider } from '../config/load.ts';
import type { Scenario } from './scenario.ts';
import { pruneWindow, type KeyState, type ProviderState } from './state.ts';

/**
 * A simulated provider: its keys as the scheduler sees them (limits, request log, cool-down,
 * AIMD state) and what the provider itself enforces. A scenario's `providerLimits` can make the
 * provider stricter than the config says; exceeding its limits earns a 429 with Retry-After,
 * as the fake provider server answers.
 */

export const PROVIDER_WINDOW_MS = 60_000;

export function createProviderState(p: ResolvedProvider, config: Config, scenario: Scenario): ProviderState {
  const limit = scenario.providerLimits[p.name];
  // Planning is for the intended setup: a key whose env secret is absent here still counts.
  const keys: KeyState[] = p.keys.map((k) => {
    const side = limit?.keys[k.id];
    return {
      id: k.id,
      rpm: k.rpm,
      concurrency: k.concurrency,
      usable: !k.disabled,
      inFlight: 0,
      starts: [],
      cooldownUntilMs: 0,
      side: {
        rpm: side?.rpm ?? k.rpm,
        concurrency: side?.concurrency ?? k.concurrency,
        accepted: [],
        inFlight: 0,
      },
      rec: {
        id: k.id,
        rpm: k.rpm,
        concurrency: k.concurrency,
        requests: 0,
        rateLimited: 0,
        busyMs: 0,
        maxIn60s: 0,
        maxInFlight: 0,
      },
    };
  });
  const usableConcurrency = keys.filter((k) => k.usable).reduce((n, k) => n + k.concurrency, 0);
  return {
    cfg: p,
    aimd: { effectiveConcurrency: p.concurrency, successStreak: 0 },
    aimdSettings: {
      cap: p.concurrency,
      increaseAfter: config.scheduler.aimdIncreaseAfter,
      decreaseFactor: config.scheduler.aimdDecreaseFactor,
    },
    inFlight: 0,
    keys,
    side: {
      rpm: limit?.rpm ?? Number.POSITIVE_INFINITY,
      concurrency: limit?.concurrency ?? Number.POSITIVE_INFINITY,
      accepted: [],
      inFlight: 0,
    },
    concurrencyRetryAfterMs: limit?.retryAfterMs ?? p.defaultRetryAfterMs,
    rec: {
      name: p.name,
      capacity: Math.min(p.concurrency, usableConcurrency),
      calls: 0,
      requests: 0,
      rateLimited: 0,
      busyMs: 0,
      minEffectiveConcurrency: p.concurrency,
      keys: keys.map((k) => k.rec),
    },
  };
}

/** The Retry-After (ms) the provider answers with when this call is over one of its limits. */
export function providerRejects(provider: ProviderState, key: KeyState, now: number): number | undefined {
  for (const side of [key.side, provider.side]) {
    pruneWindow(side.accepted, now, PROVIDER_WINDOW_MS);
    if (side.accepted.length >= side.rpm) {
      const blocking = side.accepted[side.accepted.length - side.rpm]!;
      return Math.max(1, blocking + PROVIDER_WINDOW_MS - now);
    }
    if (side.inFlight >= side.concurrency) return provider.concurrencyRetryAfterMs;
  }
  return undefined;
}

/** The provider accepted the call: it counts against its window and in-flight limits. */
export function providerAccepts(provider: ProviderState, key: KeyState, now: number): void {
  for (const side of [key.side, provider.side]) {
    side.accepted.push(now);
    side.inFlight++;
  }
  key.rec.maxIn60s = Math.max(key.rec.maxIn60s, key.side.accepted.length);
  key.rec.maxInFlight = Math.max(key.rec.maxInFlight, key.side.inFlight);
}

export function providerReleases(provider: ProviderState, key: KeyState): void {
  key.side.inFlight--;
  provider.side.inFlight--;
}
