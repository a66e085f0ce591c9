import type { Config } from '../config/load.ts';
import { streams } from '../sim/random.ts';
import type { Scenario } from '../sim/scenario.ts';
import { generateArrivals } from '../sim/workload.ts';

/**
 * The load test's workload: the planner's own arrivals (src/sim/workload.ts, drawn from the
 * same seeded stream the simulator uses, so `darkroom plan` and `darkroom loadtest` of one
 * scenario submit the same tasks at the same scenario times), turned into HTTP submits.
 */

export interface Submission {
  /** 0-based position in time order. */
  index: number;
  /** When to send it, ms after the run starts (scenario time ÷ speed). */
  atMs: number;
  /** The scenario's own time of the arrival. */
  scenarioAtMs: number;
  userId: string;
  plan: string;
  type: string;
  orderId: string;
  /** Sent on every attempt of this submit: a retry replays, never runs the order twice. */
  idempotencyKey: string;
  body: { user_id: string; order_id: string; type: string; plan: string; prompt: string };
}

export interface WorkloadOptions {
  /** Unique per run: part of order ids and idempotency keys (keys are global and kept forever). */
  runId: string;
  /** Prefix of user ids: `<prefix>-<scenario user>`. */
  usersPrefix: string;
  /** Arrival times are divided by this (2: twice as fast). */
  speed: number;
}

export function buildWorkload(config: Config, scenario: Scenario, opts: WorkloadOptions): Submission[] {
  const arrivals = generateArrivals(scenario, config, streams(scenario.seed).arrivals);
  return arrivals.map((a, index) => {
    const userId = `${opts.usersPrefix}-${a.userId}`;
    const orderId = `lt-${opts.runId}-${index}`;
    return {
      index,
      atMs: Math.round(a.atMs / opts.speed),
      scenarioAtMs: a.atMs,
      userId,
      plan: a.plan,
      type: a.type,
      orderId,
      idempotencyKey: `loadtest-${opts.runId}-${index}`,
      body: {
        user_id: userId,
        order_id: orderId,
        type: a.type,
        plan: a.plan,
        prompt: `loadtest ${opts.runId} #${index}`,
      },
    };
  });
}

/** Credits each user needs for its submissions at the config's plan prices. */
export function creditsNeeded(config: Config, work: readonly Submission[]): Map<string, number> {
  const need = new Map<string, number>();
  for (const s of work) need.set(s.userId, (need.get(s.userId) ?? 0) + (config.plans[s.plan]?.credits ?? 0));
  return need;
}
