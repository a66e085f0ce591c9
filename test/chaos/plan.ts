import { mulberry32 } from '../../src/images/prng.ts';
import type { Fault } from '../../src/providers/fake-server/index.ts';
import { type PLANS, PROVIDERS, TIMING, type ChaosForm, type ProviderName } from './settings.ts';

/** One fault of the run, at `at` ms after the workload starts. */
export type FaultStep =
  | { kind: 'worker_kill'; at: number }
  | { kind: 'leader_kill'; at: number }
  | { kind: 'leader_stop'; at: number; holdMs: number }
  | { kind: 'pg_restart'; at: number; downMs: number }
  | { kind: 'partition'; at: number; durationMs: number; mode: 'reset' | 'blackhole' }
  | {
      kind: 'provider_faults';
      at: number;
      label: 'storm' | 'storm_no_hint' | 'server_errors' | 'hangs' | 'broken_bodies';
      provider: ProviderName;
      faults: Fault[];
    };

export type SubmitStep = {
  kind: 'submit';
  at: number;
  n: number;
  user: string;
  type: 'portrait' | 'photography';
  plan: keyof typeof PLANS;
  order: string;
  /** Send the same request twice at once with one Idempotency-Key (both must answer the same task). */
  doubleSend: boolean;
};
export type WorkStep =
  | SubmitStep
  | { kind: 'resubmit_order'; at: number; of: number }
  | { kind: 'cancel'; at: number; of: number }
  | { kind: 'adjust'; at: number; user: string; delta: number };

export interface ChaosPlan {
  seed: number;
  form: ChaosForm;
  work: WorkStep[];
  faults: FaultStep[];
}

/** The whole run, drawn from the seed: the same seed gives the same workload and fault schedule. */
export function makePlan(seed: number, form: ChaosForm): ChaosPlan {
  const random = mulberry32(seed);
  const uniform = (lo: number, hi: number) => lo + random() * (hi - lo);
  const int = (lo: number, hi: number) => Math.floor(uniform(lo, hi + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const window = form.submitWindowMs;

  const work: WorkStep[] = [];
  const submits: SubmitStep[] = [];
  for (let n = 0; n < form.tasks; n++) {
    const roll = random();
    const step: SubmitStep = {
      kind: 'submit',
      at: Math.round(uniform(0, window)),
      n,
      user: `u${int(1, form.users)}`,
      type: random() < 0.35 ? 'photography' : 'portrait',
      plan: roll < 0.5 ? 'free' : roll < 0.85 ? 'start' : 'pro',
      order: `o${n}`,
      doubleSend: random() < 0.05,
    };
    submits.push(step);
  }
  submits.sort((a, b) => a.at - b.at);
  work.push(...submits);
  for (const s of submits) {
    if (random() < 0.04) work.push({ kind: 'resubmit_order', at: s.at + int(50, 3000), of: s.n });
  }
  const cancelable = [...submits];
  for (let i = 0; i < form.cancels; i++) {
    const s = cancelable.splice(Math.floor(random() * cancelable.length), 1)[0]!;
    work.push({ kind: 'cancel', at: s.at + int(200, 8000), of: s.n });
  }
  for (let i = 0; i < form.adjustments; i++) {
    work.push({
      kind: 'adjust',
      at: Math.round(uniform(0, window)),
      user: `u${int(1, form.users)}`,
      delta: pick([-20, -7, 5, 13, 40]),
    });
  }
  work.sort((a, b) => a.at - b.at);

  // Disruptive faults each get their own slot of the window, so their effects can be told apart.
  const disruptive: Array<(at: number) => FaultStep> = [];
  for (let i = 0; i < form.leaderKills; i++) disruptive.push((at) => ({ kind: 'leader_kill', at }));
  for (let i = 0; i < form.leaderStops; i++)
    disruptive.push((at) => ({ kind: 'leader_stop', at, holdMs: TIMING.leaderLeaseMs * 2 }));
  for (let i = 0; i < form.pgRestarts; i++)
    disruptive.push((at) => ({ kind: 'pg_restart', at, downMs: int(500, 3000) }));
  for (let i = 0; i < form.partitions; i++)
    disruptive.push((at) => ({
      kind: 'partition',
      at,
      // Sometimes shorter than a worker lease, sometimes well past it.
      durationMs: int(TIMING.workerLeaseMs / 2, TIMING.workerLeaseMs * 2.5),
      mode: i % 2 === 0 ? 'blackhole' : 'reset',
    }));
  shuffle(disruptive, random);
  const faults: FaultStep[] = [];
  const start = window * 0.1;
  const slot = (window * 0.8) / Math.max(1, disruptive.length);
  disruptive.forEach((make, i) => faults.push(make(Math.round(start + slot * i + uniform(0.1, 0.6) * slot))));

  for (let i = 0; i < form.workerKills; i++)
    faults.push({ kind: 'worker_kill', at: Math.round(uniform(window * 0.05, window)) });

  const provider = (): ProviderName => (random() < 0.75 ? 'main' : 'edit');
  const providerFaults = (
    count: number,
    label: Extract<FaultStep, { kind: 'provider_faults' }>['label'],
    faultsOf: () => Fault[],
  ) => {
    for (let i = 0; i < count; i++)
      faults.push({
        kind: 'provider_faults',
        at: Math.round(uniform(window * 0.05, window)),
        label,
        provider: provider(),
        faults: faultsOf(),
      });
  };
  for (let i = 0; i < form.storms; i++) {
    // Hint-less 429s double a key's rest each time (src/policy/rests.ts): at most two per key,
    // else one storm rests a key for minutes by design.
    const hinted = i % 2 === 0;
    const at = Math.round(uniform(window * 0.05, window));
    const target = provider();
    const keys = PROVIDERS[target].keys.length;
    faults.push({
      kind: 'provider_faults',
      at,
      label: hinted ? 'storm' : 'storm_no_hint',
      provider: target,
      faults: Array<Fault>(hinted ? int(6, 16) : int(keys, 2 * keys)).fill(
        hinted ? 'http429' : 'http429_no_retry_info',
      ),
    });
  }
  providerFaults(form.serverErrorBursts, 'server_errors', () =>
    Array.from({ length: int(3, 10) }, () => pick(['http500', 'http503'] as const)),
  );
  providerFaults(form.hangs, 'hangs', () => Array<Fault>(int(1, 3)).fill('hang'));
  providerFaults(form.brokenBodies, 'broken_bodies', () =>
    Array.from({ length: int(2, 5) }, () =>
      pick(['malformed_json', 'truncated', 'reset', 'trickle'] as const),
    ),
  );
  faults.sort((a, b) => a.at - b.at);
  return { seed, form, work, faults };
}

function shuffle<T>(items: T[], random: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
}
