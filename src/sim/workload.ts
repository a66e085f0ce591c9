import type { Config } from '../config/load.ts';
import type { Rng } from './random.ts';
import { ScenarioError, type ArrivalSpec, type Scenario } from './scenario.ts';

/** One task submission of the workload. */
export interface Arrival {
  atMs: number;
  userId: string;
  plan: string;
  type: string;
}

/**
 * Plans for a fixed population, in the mix's proportions and interleaved (smooth weighted
 * round-robin), so 20 users at 30/40/30 % are exactly 6 / 8 / 6 and not three clumps.
 */
export function apportion(mix: Record<string, number>, n: number): string[] {
  const names = Object.keys(mix).filter((k) => mix[k]! > 0);
  const total = names.reduce((a, k) => a + mix[k]!, 0);
  const credit = new Map(names.map((k) => [k, 0]));
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let best = names[0]!;
    for (const k of names) {
      credit.set(k, credit.get(k)! + mix[k]! / total);
      if (credit.get(k)! > credit.get(best)!) best = k;
    }
    credit.set(best, credit.get(best)! - 1);
    out.push(best);
  }
  return out;
}

export function defaultTaskType(config: Config, scenario: Scenario): string {
  if (scenario.type) return scenario.type;
  if (config.pipelines.photography) return 'photography';
  return Object.keys(config.pipelines)[0]!;
}

function mixOf(
  spec: { plan?: string | undefined; plans?: Record<string, number> | undefined },
  scenario: Scenario,
  config: Config,
): Record<string, number> {
  if (spec.plan) return { [spec.plan]: 1 };
  if (spec.plans) return spec.plans;
  if (scenario.plans) return scenario.plans;
  const first = Object.keys(config.plans)[0]!;
  return { [first]: 1 };
}

function checkNames(mix: Record<string, number>, type: string, config: Config, where: string): void {
  for (const plan of Object.keys(mix)) {
    if (!config.plans[plan])
      throw new ScenarioError(
        `${where}: unknown plan "${plan}" (configured: ${Object.keys(config.plans).join(', ')})`,
      );
  }
  if (!config.pipelines[type]) {
    throw new ScenarioError(
      `${where}: unknown task type "${type}" (configured: ${Object.keys(config.pipelines).join(', ')})`,
    );
  }
}

/** Every submission of the scenario, in time order (ties: in declaration order). */
export function generateArrivals(scenario: Scenario, config: Config, rng: Rng): Arrival[] {
  const out: Arrival[] = [];
  scenario.arrivals.forEach((spec: ArrivalSpec, g) => {
    const where = `arrivals[${g}]`;
    if ('burst' in spec) {
      const b = spec.burst;
      const type = b.type ?? defaultTaskType(config, scenario);
      const mix = mixOf(b, scenario, config);
      checkNames(mix, type, config, where);
      const plans = apportion(mix, b.users);
      const total = b.users * b.tasksPerUser;
      let k = 0;
      for (let round = 0; round < b.tasksPerUser; round++) {
        for (let u = 0; u < b.users; u++) {
          const offset = total > 1 ? (b.spreadSeconds * 1000 * k) / (total - 1) : 0;
          out.push({
            atMs: Math.round(b.atSeconds * 1000 + offset),
            userId: userId(g, 'b', u),
            plan: plans[u]!,
            type,
          });
          k++;
        }
      }
    } else if ('poisson' in spec) {
      const p = spec.poisson;
      const type = p.type ?? defaultTaskType(config, scenario);
      const mix = mixOf(p, scenario, config);
      checkNames(mix, type, config, where);
      const names = Object.keys(mix);
      const weights = names.map((n) => mix[n]!);
      const meanGapMs = 60_000 / p.perMinute;
      let t = p.startSeconds * 1000;
      const end = t + p.forSeconds * 1000;
      let n = 0;
      for (;;) {
        t += rng.exponential(meanGapMs);
        if (t >= end) break;
        out.push({ atMs: Math.round(t), userId: userId(g, 'q', n++), plan: names[rng.pick(weights)]!, type });
      }
    } else {
      const p = spec.periodic;
      const type = p.type ?? defaultTaskType(config, scenario);
      const mix = mixOf(p, scenario, config);
      checkNames(mix, type, config, where);
      const plans = apportion(mix, p.users);
      const everyMs = p.everySeconds * 1000;
      const start = p.startSeconds * 1000;
      const end = start + p.forSeconds * 1000;
      for (let u = 0; u < p.users; u++) {
        const phase = p.phase === 'spread' ? (everyMs * u) / p.users : 0;
        for (let t = start + phase; t < end; t += everyMs) {
          out.push({ atMs: Math.round(t), userId: userId(g, 'p', u), plan: plans[u]!, type });
        }
      }
    }
  });
  // Stable: equal times keep declaration order.
  return out
    .map((a, i) => ({ a, i }))
    .sort((x, y) => x.a.atMs - y.a.atMs || x.i - y.i)
    .map((x) => x.a);
}

function userId(group: number, kind: string, n: number): string {
  return `g${group}${kind}-${String(n).padStart(5, '0')}`;
}
