import { chooseKey, keyAvailableAtMs, recordStart } from './keys.ts';
import type { Admission, Decision, JobView, PolicyInput, ProviderView, StoreView, TaskView } from './types.ts';

/**
 * Decides which queued jobs start now, and on which key.
 *
 * Properties (test/policy/*.test.ts holds the policy to them):
 * 1. Limits: admissions never take global running tasks past `maxRunningTasks`, a user's
 *    running tasks past `perUserRunningTasks`, a provider past its effective concurrency,
 *    a key past its `concurrency` or past `rpm` starts in any window, a store past its
 *    concurrency, or the workers past their free slots.
 * 2. Work-conserving: when this returns, no ready job could be admitted under those limits.
 * 3. Fair: the next slot goes to the user with the lowest score
 *      (inFlight + 1) / weight × (1 − shortWorkPreference × smallness) − waited / agingSeconds
 *    so busy users share capacity in proportion to their weights, users with little work
 *    left go a little earlier, and waiting raises rank: a ready job that has waited
 *    agingSeconds × (the score gap) is admitted before anyone else's, so nothing starves.
 * 4. Deterministic: the same input gives the same output (ties break on ids).
 */
export function decide(input: PolicyInput): Decision {
  const now = input.nowMs;
  const windowMs = input.rpmWindowMs;
  const providers = new Map<string, ProviderView>(
    input.providers.map((p) => [p.name, { ...p, keys: p.keys.map((k) => ({ ...k, recentStartsMs: [...k.recentStartsMs] })) }]),
  );
  const stores = new Map<string, StoreView>(input.stores.map((s) => [s.name, { ...s }]));
  const tasks = new Map<string, TaskView>(input.tasks.map((t) => [t.id, { ...t }]));
  const userInFlight = new Map<string, number>(Object.entries(input.userInFlight));
  const userRunning = new Map<string, number>();
  let runningTasks = 0;
  for (const t of tasks.values()) {
    if (!t.running) continue;
    runningTasks++;
    userRunning.set(t.userId, (userRunning.get(t.userId) ?? 0) + 1);
  }
  let slots = input.workerSlotsFree;

  let nextWakeAtMs = Number.POSITIVE_INFINITY;
  const queues = new Map<string, JobView[]>();
  for (const job of input.jobs) {
    if (!tasks.has(job.taskId)) continue;
    if (job.readyAtMs > now) {
      nextWakeAtMs = Math.min(nextWakeAtMs, job.readyAtMs);
      continue;
    }
    let q = queues.get(job.userId);
    if (!q) queues.set(job.userId, (q = []));
    q.push(job);
  }
  for (const q of queues.values()) q.sort((a, b) => compareJobs(a, b, tasks));

  // Resources found full stay full for the rest of this decision: counts only go up.
  const full = new Set<string>();
  const admissions: Admission[] = [];
  const candidates = new Set(queues.keys());

  while (slots > 0 && candidates.size > 0) {
    const user = pickUser(candidates, queues, tasks, userInFlight, input);
    const queue = queues.get(user)!;
    let admitted = false;
    for (let i = 0; i < queue.length; i++) {
      const job = queue[i]!;
      const task = tasks.get(job.taskId)!;
      if (!task.running) {
        if (runningTasks >= input.limits.maxRunningTasks) continue;
        if ((userRunning.get(user) ?? 0) >= input.limits.perUserRunningTasks) continue;
      }
      if (full.has(job.resource)) continue;
      let keyId: string | undefined;
      if (job.kind === 'store') {
        const store = stores.get(job.resource);
        if (!store || store.inFlight >= store.concurrency) {
          full.add(job.resource);
          continue;
        }
        store.inFlight++;
      } else {
        const provider = providers.get(job.resource);
        if (!provider || provider.inFlight >= Math.max(1, Math.floor(provider.effectiveConcurrency))) {
          full.add(job.resource);
          continue;
        }
        const key = chooseKey(provider.keys, now, windowMs);
        if (!key) {
          full.add(job.resource);
          continue;
        }
        recordStart(key, now);
        provider.inFlight++;
        keyId = key.id;
      }
      const startsTask = !task.running;
      if (startsTask) {
        task.running = true;
        runningTasks++;
        userRunning.set(user, (userRunning.get(user) ?? 0) + 1);
      }
      slots--;
      userInFlight.set(user, (userInFlight.get(user) ?? 0) + 1);
      admissions.push({ jobId: job.id, taskId: job.taskId, resource: job.resource, startsTask, ...(keyId ? { keyId } : {}) });
      queue.splice(i, 1);
      admitted = true;
      break;
    }
    if (!admitted || queue.length === 0) candidates.delete(user);
  }

  // Time-based changes: a key's window or cool-down ending can free capacity without any event.
  for (const q of queues.values()) {
    for (const job of q) {
      if (job.kind === 'store') continue;
      const provider = providers.get(job.resource);
      if (!provider) continue;
      for (const key of provider.keys) {
        if (key.inFlight >= key.concurrency) continue;
        const at = keyAvailableAtMs(key, now, windowMs);
        if (at > now && Number.isFinite(at)) nextWakeAtMs = Math.min(nextWakeAtMs, at);
      }
    }
  }
  return Number.isFinite(nextWakeAtMs) ? { admissions, nextWakeAtMs } : { admissions };
}

function compareJobs(a: JobView, b: JobView, tasks: Map<string, TaskView>): number {
  const ta = tasks.get(a.taskId)!;
  const tb = tasks.get(b.taskId)!;
  // Finish what is started before starting more: running tasks' jobs first.
  if (ta.running !== tb.running) return ta.running ? -1 : 1;
  if (ta.createdAtMs !== tb.createdAtMs) return ta.createdAtMs - tb.createdAtMs;
  if (ta.id !== tb.id) return ta.id < tb.id ? -1 : 1;
  if (a.order !== b.order) return a.order - b.order;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** The fair-share score of a user; lower goes first. */
export function userScore(
  inFlight: number,
  weight: number,
  remainingUnits: number,
  waitedMs: number,
  fairness: PolicyInput['fairness'],
): number {
  const smallness = 1 - Math.min(1, remainingUnits / Math.max(1, fairness.maxUnits));
  const share = ((inFlight + 1) / weight) * (1 - fairness.shortWorkPreference * smallness);
  return share - waitedMs / (fairness.agingSeconds * 1000);
}

function pickUser(
  candidates: Set<string>,
  queues: Map<string, JobView[]>,
  tasks: Map<string, TaskView>,
  userInFlight: Map<string, number>,
  input: PolicyInput,
): string {
  let best: string | undefined;
  let bestScore = Number.POSITIVE_INFINITY;
  for (const user of candidates) {
    const queue = queues.get(user)!;
    const head = queue[0]!;
    const task = tasks.get(head.taskId)!;
    let waitedMs = 0;
    for (const job of queue) waitedMs = Math.max(waitedMs, input.nowMs - job.readyAtMs);
    const score = userScore(userInFlight.get(user) ?? 0, task.weight, task.remainingUnits, waitedMs, input.fairness);
    if (score < bestScore || (score === bestScore && best !== undefined && user < best)) {
      best = user;
      bestScore = score;
    }
  }
  return best!;
}
