import { keyIsUsable, storeConcurrencyOf, type Config } from '../config/load.ts';
import { storeResource } from '../policy/lifecycle.ts';
import { forgetIdle, lastServedFor, noteInFlight, type ServiceMemory } from '../policy/service-memory.ts';
import { admissibleNow, policySettings, toPolicyInput } from '../policy/policy-input.ts';
import type { JobView, KeyView, PolicyInput, ProviderView, StoreView, TaskView } from '../policy/types.ts';
import { requestsFor, resolveCapabilities } from '../providers/capabilities.ts';
import type { CapacitySnapshot, HeadLimits, ScheduleSnapshot } from '../store/schedule.ts';

/**
 * Aging memory (PolicyInput.userLastServedAtMs): when each user was last seen with a job in
 * flight, per configured server. A new leader starts empty, which only makes aging count from
 * the oldest ready job until it has seen each user once.
 */
const serviceMemories = new WeakMap<Config, ServiceMemory>();
const MEMORY_MAX_AGE_MS = 3_600_000;

interface CapacityViews {
  providers: ProviderView[];
  stores: StoreView[];
  workerSlotsFree: number;
  userInFlight: Record<string, number>;
}

/** The providers, keys, stores and worker slots as the policy sees them. */
export function capacityViews(config: Config, snap: CapacitySnapshot): CapacityViews {
  // Provider limits count requests open at the provider: a job of several requests holds several
  // slots until its answer is in (its outcome may still be being recorded: the worker slot stays
  // taken). A store job holds one store slot per image (its `requests` are its images) until its
  // outcome.
  const requestsInFlight = (resource: string, keyId?: string) =>
    snap.inFlight
      .filter((r) => r.resource === resource && (keyId === undefined || r.key_id === keyId))
      .reduce((n, r) => n + (r.requests ?? r.n), 0);
  const requestsOpen = (resource: string, keyId?: string) =>
    snap.inFlight
      .filter((r) => r.resource === resource && (keyId === undefined || r.key_id === keyId))
      .reduce((n, r) => n + (r.open ?? r.requests ?? r.n), 0);

  const providers: ProviderView[] = Object.values(config.providers).map((p) => {
    const aimd = snap.providerState.find((s) => s.provider === p.name && s.key_id === '');
    const keys: KeyView[] = p.keys.map((k) => {
      const state = snap.providerState.find((s) => s.provider === p.name && s.key_id === k.id);
      return {
        id: k.id,
        rpm: k.rpm,
        concurrency: k.concurrency,
        inFlight: requestsOpen(p.name, k.id),
        usable: keyIsUsable(p, k),
        cooldownUntilMs: state?.cooldown_ms ?? 0,
        recentStartsMs: snap.keyRequests
          .filter((r) => r.provider === p.name && r.key_id === k.id)
          .map((r) => r.t_ms),
      };
    });
    return {
      name: p.name,
      concurrency: p.concurrency,
      effectiveConcurrency: Math.min(p.concurrency, aimd?.effective_concurrency ?? p.concurrency),
      inFlight: requestsOpen(p.name),
      keys,
    };
  });

  const stores: StoreView[] = [];
  for (const pipeline of Object.values(config.pipelines)) {
    for (const step of pipeline.steps) {
      if (step.kind !== 'store') continue;
      const name = storeResource(pipeline, step);
      stores.push({ name, concurrency: storeConcurrencyOf(step), inFlight: requestsInFlight(name) });
    }
  }
  const userInFlight: Record<string, number> = {};
  let totalInFlight = 0;
  for (const r of snap.inFlight) {
    userInFlight[r.user_id] = (userInFlight[r.user_id] ?? 0) + r.n;
    totalInFlight += r.n;
  }
  return { providers, stores, workerSlotsFree: Math.max(0, snap.workerSlots - totalInFlight), userInFlight };
}

/**
 * How much of the queue a pass reads (store/schedule.ts readQueueHead): per resource, what
 * could be admitted there now plus one; and the resource each task type starts on.
 */
export function headLimits(
  config: Config,
  snap: CapacitySnapshot,
  rpmWindowMs: number,
  dispatchMs: number,
): HeadLimits {
  const views = capacityViews(config, snap);
  const admissible = admissibleNow({ nowMs: snap.nowMs, rpmWindowMs, ...views });
  const startsOn = new Map<string, string[]>();
  for (const [type, pipeline] of Object.entries(config.pipelines)) {
    const first = pipeline.steps[0];
    if (!first) continue;
    const resource = first.kind === 'store' ? storeResource(pipeline, first) : first.provider!;
    startsOn.set(resource, [...(startsOn.get(resource) ?? []), type]);
  }
  return {
    nowMs: snap.nowMs,
    dispatchMs,
    perResource: [...admissible].map(([resource, n]) => ({ resource, k: n + 1 })),
    startsOn: [...startsOn].map(([resource, types]) => ({ resource, types })),
  };
}

/**
 * Turns what the database says into the policy's pure input. `dispatchMs` is the measured
 * admission → start delay, as the planner's forecast uses it (one deadline rule).
 */
export function buildPolicyInput(
  config: Config,
  snap: ScheduleSnapshot,
  rpmWindowMs: number,
  dispatchMs: number,
): PolicyInput {
  const { providers, stores, workerSlotsFree, userInFlight } = capacityViews(config, snap);
  const imagesPerRequest = new Map(
    Object.values(config.providers).map((p) => [p.name, resolveCapabilities(p).maxImagesPerRequest]),
  );
  const tasks: TaskView[] = snap.tasks.map((t) => ({
    id: t.id,
    userId: t.user_id,
    weight: t.weight,
    running: t.state === 'running',
    createdAtMs: t.created_ms,
    remainingUnits: t.remaining,
    deadlineAtMs: t.deadline_ms ?? undefined,
  }));
  const jobs: JobView[] = snap.jobs.map((j) => ({
    id: j.id,
    taskId: j.task_id,
    userId: j.user_id,
    kind: j.kind,
    resource: j.resource,
    readyAtMs: j.ready_ms,
    order: j.order,
    requests:
      j.kind === 'store'
        ? Math.max(1, j.count ?? 1)
        : requestsFor(j.count ?? 1, imagesPerRequest.get(j.resource) ?? 1),
  }));
  let memory = serviceMemories.get(config);
  if (!memory) serviceMemories.set(config, (memory = new Map()));
  forgetIdle(memory, snap.nowMs, MEMORY_MAX_AGE_MS);
  noteInFlight(memory, userInFlight, snap.nowMs);
  return toPolicyInput(policySettings(config, rpmWindowMs, dispatchMs), {
    nowMs: snap.nowMs,
    workerSlotsFree,
    tasks,
    jobs,
    providers,
    stores,
    userInFlight,
    userLastServedAtMs: lastServedFor(memory, new Set(snap.jobs.map((j) => j.user_id))),
  });
}
