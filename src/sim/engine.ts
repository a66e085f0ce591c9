import { rpmWindowMs, storeConcurrencyOf, type Config, type ResolvedStep } from '../config/load.ts';
import { requestsFor, resolveCapabilities } from '../providers/capabilities.ts';
import { decide } from '../policy/admission.ts';
import { aimdOnRateLimit, aimdOnSuccess } from '../policy/aimd.ts';
import { maxAttemptsOf, stepResource, storeResource } from '../policy/lifecycle.ts';
import { noteServed, type ServiceMemory } from '../policy/service-memory.ts';
import type { Decision, PolicyInput } from '../policy/types.ts';
import { sampleLatency } from './distributions.ts';
import { EventHeap } from './heap.ts';
import { createProviderState, providerAccepts, providerRejects, providerReleases } from './provider-side.ts';
import { streams, type Rng } from './random.ts';
import type { CallStart, DepthSeries, SimRun } from './records.ts';
import type { Scenario } from './scenario.ts';
import type { SeedFlight, SeedTask, SimSeed } from './seed.ts';
import { TaskBook } from './tasks.ts';
import { drawOutcome, latencyOf } from './service.ts';
import { ms, type Flight, type ProviderState, type SimJob, type SimTask, type StoreState } from './state.ts';
import { buildPolicyInput } from './view.ts';
import { generateArrivals, type Arrival } from './workload.ts';

export type {
  CallStart,
  DepthSeries,
  KeyRecord,
  ProviderRecord,
  SimRun,
  StoreRecord,
  TaskRecord,
} from './records.ts';

/**
 * The planner's discrete-event simulator. Tasks arrive per the scenario, and the SAME `decide()`
 * the scheduler runs admits their jobs on a virtual clock (fed by view.ts, as
 * src/scheduler/policy-input.ts feeds the server's). What an outcome does to its task is the
 * server's lifecycle, src/policy/lifecycle.ts (fan-out, next stage, retry, failure, end and
 * refund); around it, a 429 cools the key and lowers the provider's AIMD concurrency, and a task
 * not started by its deadline is canceled.
 */

export interface SimHooks {
  /** Every decision, with the exact input decide() saw. */
  onDecision?: (input: PolicyInput, decision: Decision, sim: Simulation) => void;
  /** Every provider call as it reaches the provider. */
  onCallStart?: (call: CallStart) => void;
  /** Every job's answer (a call's) or end (a store job's), before its outcome is applied. */
  onJobEnd?: (job: SimJob, startedAtMs: number, atMs: number) => void;
}

export interface SimOptions extends SimHooks {
  /** Give decide() every queued job and task instead of the reduced view (tests; slower). */
  fullView?: boolean;
  /**
   * Start from this state instead of the scenario's arrivals (the forecast of the live queue:
   * src/sim/forecast.ts). The scenario still gives latencies, errors and limits.
   */
  seed?: SimSeed;
  /** Checked after every instant's decision: true ends the run there (`stoppedEarly`). */
  stopWhen?: (sim: Simulation) => boolean;
  /** Ends the run (`stoppedEarly`) after this many instants (event times) have been simulated. */
  maxSteps?: number;
  /** Ends the run with the clock at this time, before anything later happens. */
  stopAtMs?: number;
}

type SimEvent =
  | { at: number; kind: 'arrive'; arrival: Arrival }
  | { at: number; kind: 'seed-arrive'; task: SeedTask }
  | { at: number; kind: 'start'; flight: Flight }
  | { at: number; kind: 'end'; flight: Flight }
  | { at: number; kind: 'outcome'; flight: Flight }
  | { at: number; kind: 'wake' }
  | { at: number; kind: 'deadline'; task: SimTask };

export class Simulation {
  readonly config: Config;
  readonly scenario: Scenario;
  readonly workerSlots: number;
  now = 0;

  private readonly options: SimOptions;
  private readonly heap = new EventHeap<SimEvent>();
  private readonly wakes = new Set<number>();
  private readonly rng: { arrivals: Rng; service: Rng; retries: Rng };
  private readonly providers = new Map<string, ProviderState>();
  private readonly stores = new Map<string, StoreState>();
  private readonly book: TaskBook;
  private readonly memory: ServiceMemory = new Map();
  private readonly windowMs: number;
  private readonly rejected: Array<{ plan: string; atMs: number }> = [];
  private readonly depth: DepthSeries = { tMs: [], queued: [], running: [] };
  private readonly errors = { transient: 0, timeout: 0, permanent: 0 };
  private queuedAreaMs = 0;
  private lastDepthAt = 0;
  private decisions = 0;
  private taskSeq = 0;
  /** Resources of the pipelines' first steps: the groups queued tasks start in. */
  private readonly firstResources = new Set<string>();

  constructor(config: Config, scenario: Scenario, options: SimOptions = {}) {
    this.config = config;
    this.scenario = scenario;
    this.options = options;
    this.rng = streams(scenario.seed);
    this.book = new TaskBook(config, {
      now: () => this.now,
      wakeAt: (at) => this.scheduleWake(at),
      requestsOf: (provider, count) => this.requestsOf(provider, count),
    });
    this.workerSlots = options.seed?.workerSlots ?? scenario.workers * config.worker.concurrency;
    this.windowMs = rpmWindowMs(config);
    for (const p of Object.values(config.providers))
      this.providers.set(p.name, createProviderState(p, config, scenario));
    for (const pipeline of Object.values(config.pipelines)) {
      const first = pipeline.steps[0]!;
      this.firstResources.add(stepResource(pipeline, first));
      for (const step of pipeline.steps) {
        if (step.kind !== 'store') continue;
        const name = storeResource(pipeline, step);
        const concurrency = storeConcurrencyOf(step);
        this.stores.set(name, {
          name,
          concurrency,
          inFlight: 0,
          rec: { name, concurrency, jobs: 0, images: 0, busyMs: 0 },
        });
      }
    }
    for (const a of generateArrivals(scenario, config, this.rng.arrivals))
      this.heap.push({ at: a.atMs, kind: 'arrive', arrival: a });
    if (options.seed) this.applySeed(options.seed);
  }

  /** Runs until every task has ended (or the scenario's time limit). */
  run(): SimRun {
    const limitMs = this.scenario.maxSimulatedHours * 3_600_000;
    const startMs = this.heap.peek()?.at ?? 0;
    this.lastDepthAt = startMs;
    let stoppedEarly = false;
    const maxSteps = this.options.maxSteps ?? Number.POSITIVE_INFINITY;
    const stopAtMs = this.options.stopAtMs ?? Number.POSITIVE_INFINITY;
    let steps = 0;
    while (this.heap.size > 0) {
      const t = this.heap.peek()!.at;
      if (t > stopAtMs) {
        this.advanceTo(stopAtMs);
        stoppedEarly = true;
        break;
      }
      if (t > limitMs || steps >= maxSteps) {
        stoppedEarly = true;
        break;
      }
      steps++;
      this.advanceTo(t);
      while (this.heap.size > 0 && this.heap.peek()!.at === t) this.handle(this.heap.pop()!);
      this.admit();
      this.recordDepth();
      if (this.options.stopWhen?.(this)) {
        stoppedEarly = this.heap.size > 0;
        break;
      }
    }
    const endMs = this.book.tasks.reduce((m, t) => Math.max(m, t.finishedAtMs ?? this.now), startMs);
    return {
      startMs,
      endMs,
      workerSlots: this.workerSlots,
      tasks: this.book.tasks.map((t) => ({
        id: t.id,
        userId: t.userId,
        plan: t.plan,
        type: t.type,
        images: t.imagesTotal,
        submittedMs: t.createdAtMs,
        startedMs: t.startedAtMs,
        finishedMs: t.finishedAtMs,
        state: t.state === 'queued' || t.state === 'running' ? 'unfinished' : t.state,
        done: t.done,
        failed: t.failed,
      })),
      rejected: this.rejected,
      providers: [...this.providers.values()].map((p) => p.rec),
      stores: [...this.stores.values()].map((s) => s.rec),
      depth: this.depth,
      queuedAreaMs: this.queuedAreaMs,
      errors: this.errors,
      retries: this.book.retries,
      decisions: this.decisions,
      stoppedEarly,
    };
  }

  private advanceTo(t: number): void {
    this.queuedAreaMs += this.book.queuedTasks * (t - this.lastDepthAt);
    this.lastDepthAt = t;
    this.now = t;
  }

  private recordDepth(): void {
    const { queuedTasks, runningTasks } = this.book;
    const d = this.depth;
    const n = d.tMs.length;
    if (n > 0 && d.queued[n - 1] === queuedTasks && d.running[n - 1] === runningTasks) return;
    if (n > 0 && d.tMs[n - 1] === this.now) {
      d.queued[n - 1] = queuedTasks;
      d.running[n - 1] = runningTasks;
      return;
    }
    d.tMs.push(this.now);
    d.queued.push(queuedTasks);
    d.running.push(runningTasks);
  }

  private handle(e: SimEvent): void {
    switch (e.kind) {
      case 'arrive':
        return this.arrive(e.arrival);
      case 'seed-arrive':
        return this.addSeedTask(e.task);
      case 'start':
        return this.startCall(e.flight);
      case 'end':
        return this.end(e.flight);
      case 'outcome':
        return this.outcome(e.flight);
      case 'wake':
        this.wakes.delete(e.at);
        return;
      case 'deadline':
        return this.book.deadline(e.task);
    }
  }

  private scheduleWake(at: number): void {
    if (at <= this.now || this.wakes.has(at)) return;
    this.wakes.add(at);
    this.heap.push({ at, kind: 'wake' });
  }

  // ---- tasks and jobs --------------------------------------------------------------------

  private arrive(a: Arrival): void {
    if (this.book.queuedTasks >= this.config.limits.maxQueuedTasks) {
      this.rejected.push({ plan: a.plan, atMs: this.now });
      return;
    }
    const task = this.book.submit(`t${String(++this.taskSeq).padStart(6, '0')}`, a.userId, a.plan, a.type);
    if (task.deadlineAtMs !== undefined) this.heap.push({ at: task.deadlineAtMs, kind: 'deadline', task });
  }

  // ---- a seeded start (the live queue's forecast) -------------------------------------------

  private applySeed(seed: SimSeed): void {
    this.now = seed.nowMs;
    for (const [user, at] of Object.entries(seed.lastServedAtMs)) this.memory.set(user, at);
    for (const [name, effective] of Object.entries(seed.effectiveConcurrency)) {
      const p = this.providers.get(name);
      if (!p) continue;
      p.aimd = {
        effectiveConcurrency: Math.min(p.cfg.concurrency, Math.max(1, effective)),
        successStreak: 0,
      };
      p.rec.minEffectiveConcurrency = p.aimd.effectiveConcurrency;
    }
    for (const k of seed.keys) {
      const key = this.providers.get(k.provider)?.keys.find((x) => x.id === k.id);
      if (!key) continue;
      key.starts = [...k.startsMs].sort((a, b) => a - b);
      key.side.accepted = key.starts.filter((t) => t <= seed.nowMs);
      key.cooldownUntilMs = k.cooldownUntilMs;
      if (k.usable !== undefined) key.usable = k.usable;
      if (k.cooldownUntilMs > seed.nowMs) this.scheduleWake(k.cooldownUntilMs);
    }
    // Users' queued tasks must stay in creation order.
    const tasks = [...seed.tasks].sort(
      (a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
    for (const t of tasks) {
      const at = t.arriveAtMs ?? seed.nowMs;
      if (at > seed.nowMs) this.heap.push({ at, kind: 'seed-arrive', task: t });
      else this.addSeedTask(t);
    }
    // A first decision at the seed's instant, whatever else is scheduled.
    this.heap.push({ at: seed.nowMs, kind: 'wake' });
    this.wakes.add(seed.nowMs);
  }

  private addSeedTask(t: SeedTask): void {
    const pipeline = this.config.pipelines[t.type];
    if (!pipeline) return;
    const task: SimTask = {
      id: t.id,
      userId: t.userId,
      plan: t.plan,
      type: t.type,
      pipeline,
      weight: t.weight,
      imagesTotal: t.imagesTotal,
      creditsCharged: this.config.plans[t.plan]?.credits ?? 0,
      creditsRefunded: 0,
      createdAtMs: t.createdAtMs,
      deadlineAtMs: t.deadlineAtMs,
      state: t.state,
      stage: pipeline.steps[0]!.name,
      startedAtMs: t.state === 'running' ? (t.startedAtMs ?? t.createdAtMs) : undefined,
      finishedAtMs: undefined,
      done: t.done,
      failed: t.failed,
      canceled: t.canceled ?? false,
      queued: [],
      inFlight: 0,
      transformLeft: new Map(),
    };
    this.book.add(task);
    const attemptsOf = (step: ResolvedStep) => maxAttemptsOf(step, this.config.worker.maxAttempts);
    // Transform steps in progress: the next step's jobs come when their last call succeeds.
    const countTransform = (step: ResolvedStep) => {
      if (step.kind === 'transform')
        task.transformLeft.set(step.index, (task.transformLeft.get(step.index) ?? 0) + 1);
    };
    if (!task.canceled) {
      if (t.queued === undefined) this.book.enqueueCallStep(task, pipeline.steps[0]!, t.createdAtMs);
      else {
        for (const j of t.queued) {
          const step = pipeline.steps[j.stepIndex];
          if (!step || !this.resourceKnown(pipeline, step)) continue;
          this.book.enqueue(task, step, j.firstIndex, j.count, attemptsOf(step), j.readyAtMs, j.attempts);
          countTransform(step);
          if (j.readyAtMs > this.now) this.scheduleWake(j.readyAtMs);
        }
      }
    }
    for (const f of t.inFlight ?? []) {
      const step = pipeline.steps[f.stepIndex];
      if (!step || !this.resourceKnown(pipeline, step)) continue;
      countTransform(step);
      const job = this.book.newJob(
        task,
        step,
        f.firstIndex,
        f.count,
        attemptsOf(step),
        f.startedAtMs,
        f.attempts,
      );
      this.book.running(job);
      let keyId: string | undefined;
      if (job.kind === 'store') this.stores.get(job.resource)!.inFlight += job.requests;
      else {
        const provider = this.providers.get(job.resource)!;
        const key = provider.keys.find((k) => k.id === f.keyId) ?? provider.keys[0]!;
        keyId = key.id;
        provider.inFlight += job.requests;
        key.inFlight += job.requests;
        key.side.inFlight += job.requests;
        provider.side.inFlight += job.requests;
      }
      const flight: Flight = {
        job,
        keyId,
        startAtMs: f.startedAtMs,
        accepted: true,
        acceptedRequests: job.requests,
        outcome: { kind: 'success' },
      };
      this.heap.push({ at: Math.max(this.now, f.endsAtMs), kind: 'end', flight });
    }
    if (task.state === 'queued' && task.deadlineAtMs !== undefined)
      this.heap.push({ at: Math.max(this.now, task.deadlineAtMs), kind: 'deadline', task });
    this.book.finishIfDone(task);
  }

  private resourceKnown(pipeline: SimTask['pipeline'], step: ResolvedStep): boolean {
    return step.kind === 'store'
      ? this.stores.has(storeResource(pipeline, step))
      : this.providers.has(step.provider ?? '');
  }

  /**
   * The simulation's state now, as a seed: a run seeded with it continues this one (with fixed
   * latencies and no errors, exactly; test/sim/forecast.test.ts checks it). Arrivals still to
   * come are left out; calls admitted but not started (dispatchMs) are seeded as in flight.
   */
  toSeed(): SimSeed {
    const flights = new Map<SimTask, SeedFlight[]>();
    for (const e of this.heap.values()) {
      // A call answered and not recorded yet is seeded in flight until its outcome: it then holds
      // its provider slot for those `recordMs` too (a seed has no answered-but-open state).
      if (e.kind !== 'end' && e.kind !== 'start' && e.kind !== 'outcome') continue;
      const f = e.flight;
      const step = f.job.step;
      const endsAtMs =
        e.kind !== 'start'
          ? e.at
          : e.at +
            ms(
              sampleLatency(
                latencyOf(this.config, this.scenario, f.job.task.pipeline, step),
                this.rng.service,
              ),
            );
      let list = flights.get(f.job.task);
      if (!list) flights.set(f.job.task, (list = []));
      list.push({
        stepIndex: step.index,
        firstIndex: f.job.firstIndex,
        count: f.job.count,
        attempts: f.job.attempts,
        keyId: f.keyId,
        startedAtMs: f.startAtMs,
        endsAtMs,
      });
    }
    return {
      nowMs: this.now,
      workerSlots: this.workerSlots,
      tasks: this.openTasks().map((t) => ({
        id: t.id,
        userId: t.userId,
        plan: t.plan,
        type: t.type,
        weight: t.weight,
        imagesTotal: t.imagesTotal,
        done: t.done,
        failed: t.failed,
        createdAtMs: t.createdAtMs,
        deadlineAtMs: t.deadlineAtMs,
        state: t.state === 'running' ? 'running' : 'queued',
        startedAtMs: t.startedAtMs,
        canceled: t.canceled,
        queued: t.queued.map((j) => ({
          stepIndex: j.step.index,
          firstIndex: j.firstIndex,
          count: j.count,
          attempts: j.attempts,
          readyAtMs: j.readyAtMs,
        })),
        inFlight: flights.get(t) ?? [],
      })),
      keys: [...this.providers.values()].flatMap((p) =>
        p.keys.map((k) => ({
          provider: p.cfg.name,
          id: k.id,
          startsMs: [...k.starts],
          cooldownUntilMs: k.cooldownUntilMs,
          usable: k.usable,
        })),
      ),
      effectiveConcurrency: Object.fromEntries(
        [...this.providers.values()].map((p) => [p.cfg.name, p.aimd.effectiveConcurrency]),
      ),
      lastServedAtMs: Object.fromEntries(this.memory),
    };
  }

  /** Tasks not ended yet (the forecast reads their remaining work when a run stops early). */
  openTasks(): readonly SimTask[] {
    return this.book.openTasks();
  }

  /** The simulated task with this id (seeded tasks keep their ids). */
  task(id: string): SimTask | undefined {
    return this.book.task(id);
  }

  /** Requests a call of `count` images makes on this provider, as its adapter splits it. */
  private requestsOf(provider: string, count: number): number {
    const cfg = this.config.providers[provider];
    return cfg ? requestsFor(count, resolveCapabilities(cfg).maxImagesPerRequest) : 1;
  }

  // ---- admission ---------------------------------------------------------------------------

  private admit(): void {
    if (this.book.queuedJobs.size === 0) return;
    const input = this.policyInput(this.options.fullView ?? false);
    const decision = decide(input);
    this.decisions++;
    this.options.onDecision?.(input, decision, this);
    const dispatch = ms(this.scenario.dispatchMs);
    for (const a of decision.admissions) {
      const job = this.book.queuedJobs.get(a.jobId);
      if (!job) throw new Error(`decide() admitted an unknown job ${a.jobId}`);
      this.book.admit(job, a.startsTask, this.now + dispatch);
      if (job.kind === 'store') {
        this.stores.get(job.resource)!.inFlight += job.requests;
      } else {
        const provider = this.providers.get(job.resource)!;
        const key = provider.keys.find((k) => k.id === a.keyId)!;
        provider.inFlight += job.requests;
        key.inFlight += job.requests;
        for (let i = 0; i < job.requests; i++) key.starts.push(this.now);
      }
      const flight: Flight = {
        job,
        keyId: a.keyId,
        startAtMs: this.now + dispatch,
        accepted: true,
        acceptedRequests: 0,
        outcome: { kind: 'success' },
      };
      if (dispatch > 0) this.heap.push({ at: this.now + dispatch, kind: 'start', flight });
      else this.startCall(flight);
    }
    if (decision.nextWakeAtMs !== undefined) this.scheduleWake(decision.nextWakeAtMs);
  }

  /** The decide() input for the current state; `full` includes every queued job and task. */
  policyInput(full: boolean): PolicyInput {
    return buildPolicyInput(
      {
        now: this.now,
        config: this.config,
        scenario: this.scenario,
        windowMs: this.windowMs,
        workerSlots: this.workerSlots,
        totalInFlight: this.book.totalInFlight,
        runningTasks: this.book.runningTasks,
        users: this.book.users,
        providers: this.providers,
        stores: this.stores,
        memory: this.memory,
        firstResources: this.firstResources,
      },
      full,
    );
  }

  // ---- calls ---------------------------------------------------------------------------------

  private startCall(flight: Flight): void {
    const job = flight.job;
    const rng = this.rng.service;
    const latency = latencyOf(this.config, this.scenario, job.task.pipeline, job.step);
    if (job.kind === 'store') {
      const store = this.stores.get(job.resource)!;
      store.rec.jobs++;
      store.rec.images += job.requests;
      flight.outcome = drawOutcome(this.scenario, job.step, rng);
      this.heap.push({ at: this.now + ms(sampleLatency(latency, rng)), kind: 'end', flight });
      return;
    }
    const provider = this.providers.get(job.resource)!;
    const key = provider.keys.find((k) => k.id === flight.keyId)!;
    provider.rec.calls++;
    // The adapter sends the job's requests at once; each is accepted or refused on its own.
    let retryAfterMs: number | undefined;
    for (let i = 0; i < job.requests; i++) {
      key.rec.requests++;
      provider.rec.requests++;
      const refused = providerRejects(provider, key, this.now);
      this.options.onCallStart?.({
        atMs: this.now,
        provider: provider.cfg.name,
        keyId: key.id,
        accepted: refused === undefined,
      });
      if (refused === undefined) {
        providerAccepts(provider, key, this.now);
        flight.acceptedRequests++;
        continue;
      }
      key.rec.rateLimited++;
      provider.rec.rateLimited++;
      retryAfterMs = Math.max(retryAfterMs ?? 0, refused);
    }
    if (retryAfterMs !== undefined) {
      // Simplification: a call with any refused request is retried whole (the real adapter keeps
      // the images that came back); accepted requests still held their slots and window places.
      flight.accepted = false;
      flight.outcome = { kind: 'rate_limited', retryAfterMs };
      this.heap.push({ at: this.now + ms(this.scenario.rateLimitLatencyMs), kind: 'end', flight });
      return;
    }
    flight.outcome = drawOutcome(this.scenario, job.step, rng);
    const duration =
      flight.outcome.kind === 'timeout' ? provider.cfg.timeoutMs : ms(sampleLatency(latency, rng));
    this.heap.push({ at: this.now + duration, kind: 'end', flight });
  }

  /**
   * A call's answer (or a store job's end): the job's provider and key slots free here, as the
   * server frees them when the answer arrives (store/schedule.ts readCapacity). Its outcome
   * follows `recordMs` later (a store job's at once: its end is its outcome).
   */
  private end(flight: Flight): void {
    const job = flight.job;
    this.options.onJobEnd?.(job, flight.startAtMs, this.now);
    const busy = this.now - flight.startAtMs;
    if (job.kind === 'store') {
      const store = this.stores.get(job.resource)!;
      store.inFlight -= job.requests;
      // Utilisation counts image-time: a job holds one store slot per image.
      store.rec.busyMs += busy * job.requests;
      return this.outcome(flight);
    }
    const provider = this.providers.get(job.resource)!;
    const key = provider.keys.find((k) => k.id === flight.keyId)!;
    provider.inFlight -= job.requests;
    key.inFlight -= job.requests;
    for (let i = 0; i < flight.acceptedRequests; i++) providerReleases(provider, key);
    if (flight.accepted) {
      key.rec.busyMs += busy;
      provider.rec.busyMs += busy;
    }
    const recordMs = ms(this.scenario.recordMs);
    if (recordMs > 0) this.heap.push({ at: this.now + recordMs, kind: 'outcome', flight });
    else this.outcome(flight);
  }

  /**
   * A job's recorded outcome: until here it counted for its user (fair share, aging) and held its
   * worker slot, as the server counts a job until its outcome's transaction (readCapacity's `n`);
   * the 429's cool-down and AIMD step, the task's next jobs, its end.
   */
  private outcome(flight: Flight): void {
    const job = flight.job;
    noteServed(this.memory, job.task.userId, this.now);
    if (job.kind !== 'store') {
      const provider = this.providers.get(job.resource)!;
      const key = provider.keys.find((k) => k.id === flight.keyId)!;
      const settings = provider.aimdSettings;
      if (flight.outcome.kind === 'success') provider.aimd = aimdOnSuccess(provider.aimd, settings);
      else if (flight.outcome.kind === 'rate_limited') {
        key.cooldownUntilMs = Math.max(
          key.cooldownUntilMs,
          this.now + (flight.outcome.retryAfterMs ?? provider.cfg.defaultRetryAfterMs),
        );
        provider.aimd = aimdOnRateLimit(provider.aimd, settings, {
          nowMs: this.now,
          untilMs: this.now + (flight.outcome.retryAfterMs ?? provider.cfg.defaultRetryAfterMs),
        });
        provider.rec.minEffectiveConcurrency = Math.min(
          provider.rec.minEffectiveConcurrency,
          provider.aimd.effectiveConcurrency,
        );
        this.scheduleWake(key.cooldownUntilMs);
      }
    }
    const outcome = flight.outcome;
    if (outcome.kind === 'success') return this.book.succeed(job);
    if (outcome.kind !== 'rate_limited') this.errors[outcome.kind]++;
    this.book.fail(job, outcome.kind, this.rng.retries.uniform());
  }
}

export function simulate(config: Config, scenario: Scenario, options: SimOptions = {}): SimRun {
  return new Simulation(config, scenario, options).run();
}
