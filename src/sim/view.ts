import type { Config } from '../config/load.ts';
import { cannotMeetDeadline, providerLimit } from '../policy/admission.ts';
import { requestsInWindow } from '../policy/keys.ts';
import { policySettings, toPolicyInput } from '../policy/policy-input.ts';
import { lastServedFor, noteInFlight, type ServiceMemory } from '../policy/service-memory.ts';
import type { JobView, KeyView, PolicyInput, ProviderView, StoreView, TaskView } from '../policy/types.ts';
import type { Scenario } from './scenario.ts';
import {
  jobView,
  pruneWindow,
  type ProviderState,
  type SimJob,
  type SimTask,
  type SimUser,
  type StoreState,
} from './state.ts';

/**
 * The decide() input for the simulator's current state — what src/scheduler/policy-input.ts
 * builds from PostgreSQL for the server.
 *
 * `full` passes every queued task and job. Otherwise the view is reduced, for speed, in ways
 * that cannot change the decision (test/sim/view.test.ts checks decide(reduced) = decide(full)
 * at every step of random runs):
 * - per (task, resource), only the first ready jobs in order, as many as could be admitted on
 *   that resource now plus one (a decision admits a prefix of them; the one more lets decide()
 *   find the resource full and compute its wake-up), the oldest ready job (it sets the user's
 *   aging) and the soonest job still waiting on a backoff (the wake-up);
 * - per user and first resource, only the oldest queued tasks that could start now plus one;
 * - queued tasks that can no longer start before their deadline (decide() ignores them).
 */

export interface ViewSource {
  now: number;
  config: Config;
  scenario: Scenario;
  windowMs: number;
  workerSlots: number;
  totalInFlight: number;
  runningTasks: number;
  users: Map<string, SimUser>;
  providers: Map<string, ProviderState>;
  stores: Map<string, StoreState>;
  memory: ServiceMemory;
  /** Resources of the pipelines' first steps: the groups queued tasks start in. */
  firstResources: Set<string>;
}

export function buildPolicyInput(src: ViewSource, full: boolean): PolicyInput {
  const now = src.now;
  const userInFlight: Record<string, number> = {};
  for (const u of src.users.values()) if (u.inFlight > 0) userInFlight[u.id] = u.inFlight;
  noteInFlight(src.memory, userInFlight, now);
  const slotsFree = Math.max(0, src.workerSlots - src.totalInFlight);

  const providers: ProviderView[] = [];
  const capacityLeft = new Map<string, number>();
  for (const p of src.providers.values()) {
    const keys: KeyView[] = p.keys.map((k) => {
      pruneWindow(k.starts, now, src.windowMs);
      return {
        id: k.id,
        rpm: k.rpm,
        concurrency: k.concurrency,
        inFlight: k.inFlight,
        usable: k.usable,
        cooldownUntilMs: k.cooldownUntilMs,
        recentStartsMs: k.starts,
      };
    });
    const view: ProviderView = {
      name: p.cfg.name,
      concurrency: p.cfg.concurrency,
      effectiveConcurrency: Math.min(p.cfg.concurrency, p.aimd.effectiveConcurrency),
      inFlight: p.inFlight,
      keys,
    };
    providers.push(view);
    let byKeys = 0;
    for (const k of keys) {
      if (!k.usable || k.cooldownUntilMs > now) continue;
      byKeys += Math.max(
        0,
        Math.min(k.concurrency - k.inFlight, k.rpm - requestsInWindow(k, now, src.windowMs)),
      );
    }
    capacityLeft.set(view.name, Math.min(providerLimit(view) - p.inFlight, byKeys));
  }
  const stores: StoreView[] = [];
  for (const s of src.stores.values()) {
    stores.push({ name: s.name, concurrency: s.concurrency, inFlight: s.inFlight });
    capacityLeft.set(s.name, s.concurrency - s.inFlight);
  }
  const admissible = (resource: string) =>
    Math.max(0, Math.min(slotsFree, capacityLeft.get(resource) ?? 0)) + 1;

  const tasks: TaskView[] = [];
  const jobs: JobView[] = [];
  const { maxRunningTasks, perUserRunningTasks } = src.config.limits;
  for (const user of src.users.values()) {
    for (const task of user.running) addTask(task, now, full, admissible, tasks, jobs);
    if (full) {
      for (const task of user.queued) addTask(task, now, full, admissible, tasks, jobs);
      continue;
    }
    const canStart = Math.min(
      perUserRunningTasks - user.running.length,
      maxRunningTasks - src.runningTasks,
      slotsFree,
    );
    const taken = new Map<string, number>();
    let groupsFull = 0;
    for (const task of user.queued) {
      if (groupsFull === src.firstResources.size) break;
      const first = task.queued[0];
      if (
        !first ||
        cannotMeetDeadline({ running: false, deadlineAtMs: task.deadlineAtMs }, now, src.scenario.dispatchMs)
      ) {
        continue;
      }
      const n = taken.get(first.resource) ?? 0;
      const limit = Math.max(0, Math.min(canStart, capacityLeft.get(first.resource) ?? 0)) + 1;
      if (n >= limit) continue;
      taken.set(first.resource, n + 1);
      if (n + 1 === limit) groupsFull++;
      addTask(task, now, full, admissible, tasks, jobs);
    }
  }
  return toPolicyInput(policySettings(src.config, src.windowMs, src.scenario.dispatchMs), {
    nowMs: now,
    workerSlotsFree: slotsFree,
    tasks,
    jobs,
    providers,
    stores,
    userInFlight,
    userLastServedAtMs: lastServedFor(src.memory, src.users.keys()),
  });
}

interface ResourceCut {
  taken: number;
  limit: number;
  oldest?: SimJob;
  oldestTaken: boolean;
  soonest?: SimJob;
}

function addTask(
  task: SimTask,
  now: number,
  full: boolean,
  admissible: (resource: string) => number,
  tasks: TaskView[],
  jobs: JobView[],
): void {
  tasks.push({
    id: task.id,
    userId: task.userId,
    weight: task.weight,
    running: task.state === 'running',
    createdAtMs: task.createdAtMs,
    remainingUnits: task.imagesTotal - task.done - task.failed,
    deadlineAtMs: task.deadlineAtMs,
  });
  if (full) {
    for (const j of task.queued) jobs.push(jobView(j));
    return;
  }
  // Cut per resource and request cost: whether a call fits depends only on its requests (fewer
  // always fit where more do), so a later, smaller job can be admitted where the first ones cannot.
  const perResource = new Map<string, ResourceCut>();
  for (const j of task.queued) {
    const group = `${j.resource}\0${j.requests}`;
    let r = perResource.get(group);
    if (!r) perResource.set(group, (r = { taken: 0, limit: admissible(j.resource), oldestTaken: false }));
    if (j.readyAtMs > now) {
      if (!r.soonest || j.readyAtMs < r.soonest.readyAtMs) r.soonest = j;
      continue;
    }
    const older = !r.oldest || j.readyAtMs < r.oldest.readyAtMs;
    if (r.taken < r.limit) {
      r.taken++;
      jobs.push(jobView(j));
      if (older) {
        r.oldest = j;
        r.oldestTaken = true;
      }
    } else if (older) {
      r.oldest = j;
      r.oldestTaken = false;
    }
  }
  for (const r of perResource.values()) {
    if (r.oldest && !r.oldestTaken) jobs.push(jobView(r.oldest));
    if (r.soonest) jobs.push(jobView(r.soonest));
  }
}
