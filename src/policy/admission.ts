import { chooseKey, keyAvailableAtMs, recordStart } from './keys.ts';
import { MinHeap } from './heap.ts';
import type {
  Admission,
  Decision,
  FairnessSettings,
  JobView,
  PolicyInput,
  ProviderView,
  StoreView,
  TaskView,
} from './types.ts';

/**
 * Decides which queued jobs start now, and on which key. Pure: no I/O, no clock reads, the
 * same input always gives the same output.
 *
 * Properties (test/policy/*.test.ts checks each at every step of randomised simulated runs):
 *
 * 1. Limits are never exceeded. Admissions never take the running tasks past
 *    `maxRunningTasks`, a user's running tasks past `perUserRunningTasks`, a provider past its
 *    AIMD effective concurrency (⌊effective⌋, at least 1; an idle provider may take one job of
 *    more requests, up to its configured cap), a key past its `concurrency`, a key past `rpm`
 *    requests in any `rpmWindowMs` window (admission times of requests not started yet count
 *    too), a store step past its `concurrency` images being stored, or the workers past their free
 *    slots. Limits count requests: a job of `requests` requests (a batch split into one call per
 *    image on a model that returns one image per request) takes that many, all on one key; a store
 *    job of `requests` images takes that many of its store's concurrency (an idle store takes one
 *    job larger than its concurrency, possible only after the concurrency was lowered, so such a
 *    job cannot wait forever).
 *    A key that is unusable (disabled, no secret) or cooling down after a 429 is never chosen.
 *
 * 2. Work-conserving: when `decide` returns, no ready job left in the queue could be admitted
 *    under those limits. (A job is ready once `readyAtMs ≤ nowMs`.) One exception: a user's
 *    store jobs on one store start in order, so a smaller one waits behind a larger one that does
 *    not fit yet (images are delivered in order, and a pass reads only a user's first jobs there).
 *
 * 3. Weighted fair share. Users compete, not tasks. The next admission goes to the user with
 *    the lowest score
 *        score(u) = (inFlight(u) + 1) / w'(u)                         if u has a job in flight
 *        score(u) =  1 / w'(u) − waited(u) / agingSeconds             if it has none
 *    where w'(u) = weight × (maxUnits / remainingUnits)^shortWorkPreference is the plan weight
 *    scaled up for users whose head task has little work left. While every user is backlogged
 *    and shortWorkPreference = 0, jobs in flight — hence capacity — split in proportion to the
 *    weights (5:3:1 weights give 5:3:1 shares). Ties break on the user id.
 *
 * 4. Short work first, configurably: with shortWorkPreference p > 0 a Free task of 2 images
 *    among Pro tasks of 70 counts (70/2)^p times its weight, so with equal weights and p = 0.5
 *    it takes the next free slot ahead of any Pro user: it finishes in about its own service
 *    time plus one batch instead of after the Pro tasks (the source documents' "quick plans
 *    first"). With 5:3:1 weights the Free task needs p > 0.45 to outrank a fresh Pro task.
 *
 * 5. No starvation, with a stated bound. waited(u) runs from the later of u's oldest ready job
 *    and the last time u had a job in flight (`userLastServedAtMs`, the driver's memory; without
 *    it a backlogged user's oldest job keeps its age and the bound below weakens to "behind the
 *    users whose work became ready earlier"). Once a user with nothing in
 *    flight has waited agingSeconds / w'(u) (at most agingSeconds / weight), its score is ≤ 0
 *    and it outranks every user with a job in flight; a user with nothing in flight outranks it
 *    only if that user has waited longer still or was last served before u's threshold. So
 *    from then on every other user is admitted at most once more before u, on any resource u's
 *    next job could use: u waits at most agingSeconds / weight plus the time the resource takes
 *    to free one slot per competing user (e.g. ⌈users / concurrency⌉ job durations). Strict
 *    priorities have no such bound; this is why waiting raises rank.
 *
 * 6. Deadlines: a job of a task that has not started is not admitted when its predicted start
 *    (`nowMs + dispatchMs`) is after the task's deadline; such jobs are ignored entirely (they
 *    neither rank their user nor block anything). The scheduler cancels the task at the
 *    deadline with everything refunded and no provider call spent.
 *
 * 7. Order inside a user: jobs of running tasks first (finish what is started), then tasks by
 *    creation; inside a task, storing finished images before further calls, then the job's
 *    position in its task.
 *
 * 8. Key choice: of the keys that can start now (usable, not cooling down, below its in-flight
 *    limit and its RPM in the window) the one with the most RPM headroom, then the fewest in
 *    flight, then the lowest id — never a random one. When no key can start, `nextWakeAtMs`
 *    says when the soonest one can (window slides or cool-down ends).
 *
 * 9. Adaptive: the driver feeds 429s and successes through aimd.ts; `effectiveConcurrency`
 *    shrinks multiplicatively on a 429 and grows by one after a run of successes, up to the
 *    configured cap. A rate-limited job returns to the queue without spending an attempt.
 *
 * 10. Deterministic: the same input gives the same output; every tie breaks on ids.
 */
export function decide(input: PolicyInput): Decision {
  return decideWithUnread(input, undefined).decision;
}

/**
 * Users a driver did not put in decide()'s input (it read the queue in fair-share order and
 * stopped): each has only tasks that have not started, no job in flight, and jobs only on
 * `resources`; `scoreAtLeast` is a lower bound of every such user's score.
 */
export interface UnreadUsers {
  scoreAtLeast: number;
  resources: readonly string[];
}

/**
 * decide() on the users read, and whether the decision is exactly the one decide() would give
 * with the unread users too. It is, when every user the pass takes before an unread one could
 * have come (the next score not below `scoreAtLeast`, or no user left while slots are) finds
 * the unread users inert: the running-task limit reached, or each of their resources found full,
 * at its limit, or with every key at its concurrency. From then on an unread user admits nothing and changes nothing (counts only
 * go up), and the users read are taken exactly as before. Otherwise `exact` is false and the
 * driver reads more users.
 */
export function decideWithUnread(
  input: PolicyInput,
  unread: UnreadUsers | undefined,
): { decision: Decision; exact: boolean } {
  const now = input.nowMs;
  const windowMs = input.rpmWindowMs;
  const dispatchMs = input.dispatchMs ?? 0;
  const providers = new Map<string, ProviderView>(
    input.providers.map((p) => [
      p.name,
      { ...p, keys: p.keys.map((k) => ({ ...k, recentStartsMs: [...k.recentStartsMs] })) },
    ]),
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
  /** Per user: when its oldest ready job became ready. */
  const oldestReadyMs = new Map<string, number>();
  for (const job of input.jobs) {
    const task = tasks.get(job.taskId);
    if (!task || cannotMeetDeadline(task, now, dispatchMs)) continue;
    if (job.readyAtMs > now) {
      nextWakeAtMs = Math.min(nextWakeAtMs, job.readyAtMs);
      continue;
    }
    let q = queues.get(job.userId);
    if (!q) queues.set(job.userId, (q = []));
    q.push(job);
    oldestReadyMs.set(job.userId, Math.min(oldestReadyMs.get(job.userId) ?? job.readyAtMs, job.readyAtMs));
  }
  for (const q of queues.values()) q.sort((a, b) => compareJobs(a, b, tasks));
  const waitedMs = new Map<string, number>();
  for (const [user, oldest] of oldestReadyMs) {
    const since = Math.max(oldest, input.userLastServedAtMs?.[user] ?? Number.NEGATIVE_INFINITY);
    waitedMs.set(user, Math.max(0, now - since));
  }

  // Resources found full stay full for the rest of this decision: counts only go up.
  const full = new Set<string>();
  // Providers that had room but no key that could start a job's requests now, with the fewest
  // requests such a job needed: time alone can free them.
  const keyBlocked = new Map<string, number>();
  // Users whose next store job on a store did not fit: their later ones there wait too.
  const storeBlocked = new Set<string>();
  const admissions: Admission[] = [];
  // Only the picked user's score changes during a decision, so a heap orders the users.
  const scoreOf = (user: string): number => {
    const task = tasks.get(queues.get(user)![0]!.taskId)!;
    return userScore(
      userInFlight.get(user) ?? 0,
      task.weight,
      task.remainingUnits,
      waitedMs.get(user) ?? 0,
      input.fairness,
    );
  };
  // Users by (score, id), lowest first: the order in which they get the next admission.
  const candidates = new MinHeap<{ user: string; score: number }>(before);
  for (const user of queues.keys()) candidates.push({ user, score: scoreOf(user) });

  // A resource the unread users' jobs would find closed: examining them there changes nothing.
  // A provider whose every key is at its concurrency (or unusable) takes no job of any size and,
  // since time does not free such a key, sets no wake-up whatever the job's requests.
  const closed = (resource: string): boolean => {
    if (full.has(resource)) return true;
    const provider = providers.get(resource);
    if (provider)
      return (
        provider.inFlight >= providerLimit(provider) ||
        provider.keys.every((k) => !k.usable || k.inFlight >= k.concurrency)
      );
    const store = stores.get(resource);
    return !store || store.inFlight >= store.concurrency;
  };
  let unreadMayAct = unread !== undefined;
  while (slots > 0) {
    if (unread && unreadMayAct) {
      const next = candidates.peek();
      if (!next || !(next.score < unread.scoreAtLeast)) {
        const inert =
          runningTasks >= input.limits.maxRunningTasks || unread.resources.every((r) => closed(r));
        if (!inert) return { decision: { admissions }, exact: false };
        unreadMayAct = false;
      }
    }
    if (candidates.size === 0) break;
    const { user } = candidates.pop()!;
    const queue = queues.get(user)!;
    let admitted = false;
    for (let i = 0; i < queue.length; i++) {
      const job = queue[i]!;
      const task = tasks.get(job.taskId)!;
      const requests = Math.max(1, job.requests ?? 1);
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
        const blockKey = `${user}\u0000${job.resource}`;
        if (storeBlocked.has(blockKey)) continue;
        if (store.inFlight + requests > store.concurrency && store.inFlight > 0) {
          storeBlocked.add(blockKey);
          continue;
        }
        store.inFlight += requests;
      } else {
        const provider = providers.get(job.resource);
        if (!provider || provider.inFlight >= providerLimit(provider)) {
          full.add(job.resource);
          continue;
        }
        // A smaller job may still fit where this one does not: only "not even one" marks full.
        if (!providerFits(provider, requests)) continue;
        const key = chooseKey(provider.keys, now, windowMs, requests);
        if (!key) {
          if (requests === 1) full.add(job.resource);
          keyBlocked.set(job.resource, Math.min(keyBlocked.get(job.resource) ?? requests, requests));
          continue;
        }
        recordStart(key, now, requests);
        provider.inFlight += requests;
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
      admissions.push({
        jobId: job.id,
        taskId: job.taskId,
        resource: job.resource,
        startsTask,
        ...(keyId ? { keyId, requests } : job.kind === 'store' ? { requests } : {}),
      });
      queue.splice(i, 1);
      admitted = true;
      break;
    }
    if (admitted && queue.length > 0) candidates.push({ user, score: scoreOf(user) });
  }

  // Time alone frees a key: its RPM window slides or its cool-down ends.
  for (const [name, requests] of keyBlocked) {
    for (const key of providers.get(name)!.keys) {
      if (key.inFlight + requests > key.concurrency) continue;
      const at = keyAvailableAtMs(key, now, windowMs, requests);
      if (at > now && Number.isFinite(at)) nextWakeAtMs = Math.min(nextWakeAtMs, at);
    }
  }
  return {
    decision: Number.isFinite(nextWakeAtMs) ? { admissions, nextWakeAtMs } : { admissions },
    exact: true,
  };
}

/** Calls a provider may have in flight now: its AIMD-effective concurrency, at least one. */
export function providerLimit(provider: Pick<ProviderView, 'effectiveConcurrency' | 'concurrency'>): number {
  return Math.max(1, Math.floor(Math.min(provider.concurrency, provider.effectiveConcurrency)));
}

/**
 * Whether a provider can take a job of `requests` requests now. An idle provider takes one job
 * larger than its AIMD-effective concurrency (never past the configured cap), so a concurrency
 * shrunk by 429s below a batch's size cannot stop the provider for good.
 */
export function providerFits(
  provider: Pick<ProviderView, 'effectiveConcurrency' | 'concurrency' | 'inFlight'>,
  requests: number,
): boolean {
  if (provider.inFlight + requests <= providerLimit(provider)) return true;
  return provider.inFlight === 0 && requests <= provider.concurrency;
}

/** True when a task that has not started could not start before its deadline if admitted now. */
export function cannotMeetDeadline(
  task: Pick<TaskView, 'running' | 'deadlineAtMs'>,
  nowMs: number,
  dispatchMs: number,
): boolean {
  return !task.running && task.deadlineAtMs !== undefined && nowMs + dispatchMs > task.deadlineAtMs;
}

function compareJobs(a: JobView, b: JobView, tasks: Map<string, TaskView>): number {
  const ta = tasks.get(a.taskId)!;
  const tb = tasks.get(b.taskId)!;
  // Finish what is started before starting more: running tasks' jobs first.
  if (ta.running !== tb.running) return ta.running ? -1 : 1;
  if (ta.createdAtMs !== tb.createdAtMs) return ta.createdAtMs - tb.createdAtMs;
  if (ta.id !== tb.id) return ta.id < tb.id ? -1 : 1;
  // Inside a task, store what is generated before generating more: delivers images sooner
  // when worker slots are short, and keeps the staged backlog small.
  if ((a.kind === 'store') !== (b.kind === 'store')) return a.kind === 'store' ? -1 : 1;
  if (a.order !== b.order) return a.order - b.order;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * A user's weight scaled by the short-work preference: w × (maxUnits / remaining)^p, so a
 * user whose head task has little left counts as heavier and goes sooner.
 */
export function effectiveWeight(weight: number, remainingUnits: number, fairness: FairnessSettings): number {
  const maxUnits = Math.max(1, fairness.maxUnits);
  const units = Math.min(maxUnits, Math.max(1, remainingUnits));
  return weight * (maxUnits / units) ** fairness.shortWorkPreference;
}

/** The fair-share score of a user; lower goes first. Aging applies only while nothing is in flight. */
export function userScore(
  inFlight: number,
  weight: number,
  remainingUnits: number,
  waitedMs: number,
  fairness: FairnessSettings,
): number {
  const share = (inFlight + 1) / effectiveWeight(weight, remainingUnits, fairness);
  return inFlight > 0 ? share : share - waitedMs / (fairness.agingSeconds * 1000);
}

function before(x: { user: string; score: number }, y: { user: string; score: number }): boolean {
  return x.score < y.score || (x.score === y.score && x.user < y.user);
}
