/**
 * Queue position and ETA (pure). A task's wait is the provider work ahead of it divided by
 * the provider's current throughput (the smaller of its concurrency over the mean call
 * latency and its keys' RPM), and its own run is its calls spread over the provider's
 * concurrency, or longer when it shares the provider with other users' work under fair share
 * (`fairShareWork`).
 */
export interface ProviderThroughput {
  /** Calls in flight at once (AIMD-effective, bounded by the usable keys' concurrency). */
  concurrency: number;
  /** Sum of the usable keys' RPM. */
  rpm: number;
  meanCallMs: number;
}

export interface TaskWork {
  /** Provider calls this task still has to make. */
  calls: number;
  /** Calls that must run one after another (transform steps before the generate fan-out). */
  serialCalls: number;
  /** Images still to store, and the store step's concurrency and mean duration. */
  storeUnits: number;
  storeConcurrency: number;
  meanStoreMs: number;
}

export function callsPerSecond(p: ProviderThroughput): number {
  const byConcurrency = p.concurrency / Math.max(1, p.meanCallMs / 1000);
  const byRpm = p.rpm / 60;
  return Math.max(1e-6, Math.min(byConcurrency, byRpm));
}

/** Seconds this task needs once it runs alone on the provider. */
export function serviceSeconds(work: TaskWork, p: ProviderThroughput): number {
  const parallelCalls = Math.max(0, work.calls - work.serialCalls);
  const callS = p.meanCallMs / 1000;
  const waves = Math.ceil(parallelCalls / Math.max(1, p.concurrency));
  const byRpm = work.calls / (p.rpm / 60);
  const calls = Math.max(work.serialCalls * callS + waves * callS, byRpm);
  // Storing overlaps with generating; what remains after the last batch is about one store wave.
  const storeTail =
    work.storeUnits > 0
      ? (Math.ceil(Math.min(work.storeUnits, work.storeConcurrency) / work.storeConcurrency) *
          work.meanStoreMs) /
        1000
      : 0;
  return calls + storeTail;
}

/**
 * Seconds until a provider has worked through a load of calls (their summed mean durations in
 * `workMs`): the load spread over its concurrency, or over its keys' RPM if that is slower.
 */
export function waitSeconds(
  load: { calls: number; workMs: number },
  p: Pick<ProviderThroughput, 'concurrency' | 'rpm'>,
): number {
  return Math.max(load.workMs / 1000 / Math.max(1, p.concurrency), load.calls / (Math.max(1e-6, p.rpm) / 60));
}

export function estimateEtaSeconds(aheadCalls: number, own: TaskWork, p: ProviderThroughput): number {
  const waitS = aheadCalls / callsPerSecond(p);
  return Math.round(waitS + serviceSeconds(own, p));
}

/** A user sharing a provider with a newcomer: the provider work it has left and its fair-share weight. */
export interface Sharer {
  /** Work left, in any unit that is the same for every sharer (calls, or call-seconds). */
  work: number;
  /** Its fair-share weight (src/policy/admission.ts, `effectiveWeight`). */
  weight: number;
}

/**
 * The provider work done, the newcomer's and everyone else's together, by the time the newcomer's
 * `own.work` is done under weighted fair share (generalised processor sharing) with `others`,
 * everyone present from now and nobody arriving. While both have work left, user i is served
 * wᵢ ÷ w times as fast as the newcomer, so by the time the newcomer has done X, i has done
 * min(Wᵢ, X · wᵢ ÷ w); capacity a finished user leaves goes to those still working in proportion
 * to their weights, which keeps those ratios. Divided by the provider's throughput this is the
 * newcomer's time to finish (n equal tasks: each ends after n times its own work). O(others).
 */
export function fairShareWork(own: Sharer, others: readonly Sharer[]): number {
  const x = Math.max(0, own.work);
  const w = Math.max(1e-9, own.weight);
  let total = x;
  for (const o of others) total += Math.min(Math.max(0, o.work), (x * Math.max(0, o.weight)) / w);
  return total;
}

/**
 * The provider work a user arriving during the newcomer's run does before the newcomer ends, in
 * expectation over when it arrives: uniformly over the newcomer's progress. Arriving when the
 * newcomer has a share v of its own work X left (v uniform in [0, 1]), the arrival is served
 * wⱼ ÷ w times as fast as the newcomer until one of them ends (as in `fairShareWork`), so it does
 * min(Wⱼ, a·v) with a = X · wⱼ ÷ w. Its mean: a ÷ 2 when Wⱼ ≥ a, else Wⱼ − Wⱼ² ÷ (2a)
 * (∫₀^{Wⱼ/a} a·v dv + ∫_{Wⱼ/a}^1 Wⱼ dv). Homogeneous: n such users weigh as one with n times the
 * work and the weight.
 */
export function arrivalShare(own: Sharer, arrival: Sharer): number {
  const w = Math.max(1e-9, own.weight);
  const a = (Math.max(0, own.work) * Math.max(0, arrival.weight)) / w;
  const work = Math.max(0, arrival.work);
  if (a <= 0) return 0;
  return work >= a ? a / 2 : work - (work * work) / (2 * a);
}
