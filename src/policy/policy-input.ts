import type { FairnessSettings, Limits, PolicyInput } from './types.ts';

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
