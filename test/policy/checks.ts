import type { Decision, JobView, KeyView, PolicyInput, ProviderView } from '../../src/policy/types.ts';

/**
 * An independent statement of the policy's limits and of work conservation, written without
 * using the policy's own code: given an input and a decision, every violation as a sentence.
 */

function providerCap(p: ProviderView): number {
  return Math.max(1, Math.floor(Math.min(p.concurrency, p.effectiveConcurrency)));
}

/** Requests a provider call makes, or images a store job stores (JobView.requests, default 1). */
const requestsOf = (job: JobView): number => job.requests ?? 1;

function inWindow(key: KeyView, now: number, windowMs: number, extra: number[]): number {
  return [...key.recentStartsMs, ...extra].filter((t) => t + windowMs > now).length;
}

interface After {
  running: Set<string>;
  userRunning: Map<string, number>;
  providerInFlight: Map<string, number>;
  /** Jobs admitted per provider by the decision. */
  providerJobs: Map<string, number>;
  keyInFlight: Map<string, number>;
  keyStarts: Map<string, number[]>;
  /** Images being stored per store. */
  storeInFlight: Map<string, number>;
  /** Jobs admitted per store by the decision. */
  storeJobs: Map<string, number>;
  slotsLeft: number;
}

const keyOf = (provider: string, key: string) => `${provider}/${key}`;

/** Limits: what the admissions add to the input's state stays within every limit. */
export function limitViolations(input: PolicyInput, decision: Decision): string[] {
  const out: string[] = [];
  const now = input.nowMs;
  const dispatch = input.dispatchMs ?? 0;
  const jobs = new Map(input.jobs.map((j) => [j.id, j]));
  const tasks = new Map(input.tasks.map((t) => [t.id, t]));
  const seen = new Set<string>();
  const after = stateAfter(input, decision);

  if (decision.admissions.length > input.workerSlotsFree)
    out.push(`admitted ${decision.admissions.length} jobs into ${input.workerSlotsFree} free worker slots`);
  let runningBefore = 0;
  const userRunningBefore = new Map<string, number>();
  for (const t of input.tasks) {
    if (!t.running) continue;
    runningBefore++;
    userRunningBefore.set(t.userId, (userRunningBefore.get(t.userId) ?? 0) + 1);
  }
  const started = new Set<string>();
  for (const a of decision.admissions) {
    const job = jobs.get(a.jobId);
    if (!job) {
      out.push(`admitted unknown job ${a.jobId}`);
      continue;
    }
    if (seen.has(a.jobId)) out.push(`admitted ${a.jobId} twice`);
    seen.add(a.jobId);
    if (job.readyAtMs > now) out.push(`admitted ${a.jobId} before it is ready`);
    const task = tasks.get(job.taskId);
    if (!task) {
      out.push(`admitted ${a.jobId} of an unknown task`);
      continue;
    }
    const startsTask = !task.running && !started.has(task.id);
    if (a.startsTask !== startsTask)
      out.push(`${a.jobId}: startsTask is ${a.startsTask}, expected ${startsTask}`);
    if (startsTask) {
      started.add(task.id);
      if (task.deadlineAtMs !== undefined && now + dispatch > task.deadlineAtMs)
        out.push(`started task ${task.id} past its deadline`);
    }
    if (job.kind === 'store') {
      if (a.keyId !== undefined) out.push(`store job ${a.jobId} got a key`);
      if ((a.requests ?? 1) !== requestsOf(job))
        out.push(
          `${a.jobId}: admission records ${a.requests} images, the store job holds ${requestsOf(job)}`,
        );
    } else {
      const p = input.providers.find((x) => x.name === job.resource);
      const k = p?.keys.find((x) => x.id === a.keyId);
      if (!p || !k) out.push(`call ${a.jobId} on ${job.resource} got no valid key (${a.keyId})`);
      else {
        if ((a.requests ?? 1) !== requestsOf(job))
          out.push(`${a.jobId}: admission records ${a.requests} requests, the job makes ${requestsOf(job)}`);
        if (!k.usable) out.push(`${a.jobId} used unusable key ${k.id}`);
        if (k.cooldownUntilMs > now) out.push(`${a.jobId} used key ${k.id} during its cool-down`);
      }
    }
  }
  if (runningBefore + started.size > input.limits.maxRunningTasks && started.size > 0) {
    out.push(
      `running tasks ${runningBefore} + ${started.size} started > maxRunningTasks ${input.limits.maxRunningTasks}`,
    );
  }
  for (const [user, n] of after.userRunning) {
    const before = userRunningBefore.get(user) ?? 0;
    if (n > before && n > input.limits.perUserRunningTasks)
      out.push(`user ${user} runs ${n} tasks > ${input.limits.perUserRunningTasks}`);
  }
  for (const p of input.providers) {
    const n = after.providerInFlight.get(p.name)!;
    // An idle provider may take one job larger than its effective concurrency, up to its cap.
    const idleOversize = p.inFlight === 0 && after.providerJobs.get(p.name) === 1 && n <= p.concurrency;
    if (n > p.inFlight && n > providerCap(p) && !idleOversize)
      out.push(`provider ${p.name}: ${n} in flight > effective ${providerCap(p)}`);
    for (const k of p.keys) {
      const id = keyOf(p.name, k.id);
      const added = after.keyStarts.get(id)!;
      if (added.length === 0) continue;
      if (k.inFlight + added.length > k.concurrency)
        out.push(`key ${id}: ${k.inFlight + added.length} in flight > ${k.concurrency}`);
      const count = inWindow(k, now, input.rpmWindowMs, added);
      if (count > k.rpm) out.push(`key ${id}: ${count} requests in the window > rpm ${k.rpm}`);
    }
  }
  for (const s of input.stores) {
    const n = after.storeInFlight.get(s.name)!;
    // An idle store may take one job larger than its concurrency (lowered since the job was made).
    const idleOversize = s.inFlight === 0 && after.storeJobs.get(s.name) === 1;
    if (n > s.inFlight && n > s.concurrency && !idleOversize)
      out.push(`store ${s.name}: ${n} images being stored > ${s.concurrency}`);
  }
  return out;
}

function stateAfter(input: PolicyInput, decision: Decision): After {
  const jobs = new Map(input.jobs.map((j) => [j.id, j]));
  const tasks = new Map(input.tasks.map((t) => [t.id, t]));
  const after: After = {
    running: new Set(input.tasks.filter((t) => t.running).map((t) => t.id)),
    userRunning: new Map(),
    providerInFlight: new Map(input.providers.map((p) => [p.name, p.inFlight])),
    providerJobs: new Map(),
    keyInFlight: new Map(
      input.providers.flatMap((p) => p.keys.map((k) => [keyOf(p.name, k.id), k.inFlight] as const)),
    ),
    keyStarts: new Map(
      input.providers.flatMap((p) => p.keys.map((k) => [keyOf(p.name, k.id), [] as number[]] as const)),
    ),
    storeInFlight: new Map(input.stores.map((s) => [s.name, s.inFlight])),
    storeJobs: new Map(),
    slotsLeft: input.workerSlotsFree - decision.admissions.length,
  };
  for (const a of decision.admissions) {
    const job = jobs.get(a.jobId);
    if (!job) continue;
    after.running.add(job.taskId);
    if (job.kind === 'store') {
      after.storeInFlight.set(job.resource, (after.storeInFlight.get(job.resource) ?? 0) + requestsOf(job));
      after.storeJobs.set(job.resource, (after.storeJobs.get(job.resource) ?? 0) + 1);
    } else {
      const r = requestsOf(job);
      after.providerInFlight.set(job.resource, (after.providerInFlight.get(job.resource) ?? 0) + r);
      after.providerJobs.set(job.resource, (after.providerJobs.get(job.resource) ?? 0) + 1);
      const id = keyOf(job.resource, a.keyId ?? '');
      after.keyInFlight.set(id, (after.keyInFlight.get(id) ?? 0) + r);
      for (let i = 0; i < r; i++) after.keyStarts.get(id)?.push(input.nowMs);
    }
  }
  for (const id of after.running) {
    const t = tasks.get(id);
    if (t) after.userRunning.set(t.userId, (after.userRunning.get(t.userId) ?? 0) + 1);
  }
  return after;
}

/**
 * Work conservation: after the decision, no ready job left could still be admitted. A user's store
 * jobs on one store start in order: one behind another of the user's left on that store waits.
 */
export function admissibleLeftovers(input: PolicyInput, decision: Decision): JobView[] {
  const after = stateAfter(input, decision);
  if (after.slotsLeft <= 0) return [];
  const now = input.nowMs;
  const dispatch = input.dispatchMs ?? 0;
  const admitted = new Set(decision.admissions.map((a) => a.jobId));
  const tasks = new Map(input.tasks.map((t) => [t.id, t]));
  const runningCount = after.running.size;
  const out: JobView[] = [];
  for (const job of input.jobs) {
    if (admitted.has(job.id) || job.readyAtMs > now) continue;
    const task = tasks.get(job.taskId);
    if (!task) continue;
    if (!after.running.has(task.id)) {
      if (task.deadlineAtMs !== undefined && now + dispatch > task.deadlineAtMs) continue;
      if (runningCount >= input.limits.maxRunningTasks) continue;
      if ((after.userRunning.get(task.userId) ?? 0) >= input.limits.perUserRunningTasks) continue;
    }
    if (job.kind === 'store') {
      const s = input.stores.find((x) => x.name === job.resource);
      const held = s ? after.storeInFlight.get(s.name)! : 0;
      const fits = s !== undefined && (held + requestsOf(job) <= s.concurrency || held === 0);
      if (fits && !storeJobWaitsInOrder(job, input, admitted, tasks)) out.push(job);
      continue;
    }
    const p = input.providers.find((x) => x.name === job.resource);
    if (!p) continue;
    const r = requestsOf(job);
    const providerNow = after.providerInFlight.get(p.name)!;
    if (providerNow + r > providerCap(p) && !(providerNow === 0 && r <= p.concurrency)) continue;
    const keyFree = p.keys.some((k) => {
      const id = keyOf(p.name, k.id);
      return (
        k.usable &&
        k.cooldownUntilMs <= now &&
        after.keyInFlight.get(id)! + r <= k.concurrency &&
        inWindow(k, now, input.rpmWindowMs, after.keyStarts.get(id)!) + r <= k.rpm
      );
    });
    if (keyFree) out.push(job);
  }
  return out;
}

/** The user's store order: running tasks first, then by creation and id, then the job's order and id. */
function storeJobWaitsInOrder(
  job: JobView,
  input: PolicyInput,
  admitted: Set<string>,
  tasks: Map<string, PolicyInput['tasks'][number]>,
): boolean {
  const key = (j: JobView) => {
    const t = tasks.get(j.taskId)!;
    return [t.running ? 0 : 1, t.createdAtMs, t.id, j.order, j.id] as const;
  };
  const before = (a: JobView, b: JobView) => {
    const [x, y] = [key(a), key(b)];
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! < y[i]!;
    return false;
  };
  return input.jobs.some(
    (k) =>
      k.id !== job.id &&
      k.kind === 'store' &&
      k.userId === job.userId &&
      k.resource === job.resource &&
      !admitted.has(k.id) &&
      k.readyAtMs <= input.nowMs &&
      tasks.has(k.taskId) &&
      before(k, job),
  );
}

/** Every key's starts: no window of `windowMs` holds more than `rpm` of them. */
export function maxInAnyWindow(startsMs: number[], windowMs: number): number {
  const s = [...startsMs].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < s.length; hi++) {
    while (s[hi]! - s[lo]! >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}
