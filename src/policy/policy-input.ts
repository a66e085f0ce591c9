import { providerLimit } from './admission.ts';
import { requestsInWindow } from './keys.ts';
import type { FairnessSettings, Limits, PolicyInput, ProviderView, StoreView } from './types.ts';

/** The parts of the policy input that come from configuration and measurement, not the queue. */
export interface PolicySettings {
  limits: Limits;
  fairness: FairnessSettings;
  rpmWindowMs: number;
  dispatchMs: number;
}

interface SettingsSource {
  limits: { maxRunningTasks: number; perUserRunningTasks: number };
  scheduler: { agingSeconds: number; shortWorkPreference: number };
  plans: Record<string, { images: number }>;
}

/**
 * The one place both drivers (the scheduler on PostgreSQL, the simulator on its virtual
 * clock) turn configuration into policy settings, so both apply the same limits, fairness
 * and deadline rule (`dispatchMs`: the expected admission → start delay).
 */
export function policySettings(
  config: SettingsSource,
  rpmWindowMs: number,
  dispatchMs: number,
): PolicySettings {
  return {
    limits: {
      maxRunningTasks: config.limits.maxRunningTasks,
      perUserRunningTasks: config.limits.perUserRunningTasks,
    },
    fairness: {
      agingSeconds: config.scheduler.agingSeconds,
      shortWorkPreference: config.scheduler.shortWorkPreference,
      maxUnits: Math.max(1, ...Object.values(config.plans).map((p) => p.images)),
    },
    rpmWindowMs,
    dispatchMs: Math.max(0, dispatchMs),
  };
}

export type QueueView = Omit<PolicyInput, keyof PolicySettings>;

/** decide()'s input: the settings and a view of the queue. */
export function toPolicyInput(settings: PolicySettings, queue: QueueView): PolicyInput {
  return { ...queue, ...settings };
}

/**
 * The admission → start delay to expect, from measured samples (mean per step and how many
 * jobs each mean covers): their weighted mean, 0 without any.
 */
export function meanDispatchMs(samples: Array<{ dispatchMs: number | undefined; samples: number }>): number {
  let sum = 0;
  let n = 0;
  for (const s of samples) {
    if (s.dispatchMs === undefined || s.samples <= 0) continue;
    sum += s.dispatchMs * s.samples;
    n += s.samples;
  }
  return n > 0 ? sum / n : 0;
}

/**
 * Per resource, how many jobs one decision could admit there now: the free worker slots, the
 * provider's (AIMD) room and its keys' room (in-flight and RPM, cooling keys excluded), or the
 * store's room. A driver reads a user's first `admissibleNow + 1` ready jobs per resource and
 * decide() decides as on the whole queue: it admits at most that many there, and the one more
 * lets it find the resource full.
 */
export function admissibleNow(view: {
  nowMs: number;
  rpmWindowMs: number;
  workerSlotsFree: number;
  providers: ProviderView[];
  stores: StoreView[];
}): Map<string, number> {
  const out = new Map<string, number>();
  const slots = Math.max(0, view.workerSlotsFree);
  for (const p of view.providers) {
    let byKeys = 0;
    for (const k of p.keys) {
      if (!k.usable || k.cooldownUntilMs > view.nowMs) continue;
      byKeys += Math.max(
        0,
        Math.min(k.concurrency - k.inFlight, k.rpm - requestsInWindow(k, view.nowMs, view.rpmWindowMs)),
      );
    }
    out.set(p.name, Math.max(0, Math.min(slots, providerLimit(p) - p.inFlight, byKeys)));
  }
  for (const s of view.stores) out.set(s.name, Math.max(0, Math.min(slots, s.concurrency - s.inFlight)));
  return out;
}
