/**
 * The scheduling policy's view of the world. Pure data: the scheduler fills it from
 * PostgreSQL, the planner from its virtual clock, and `decide()` turns it into admissions.
 *
 * Glossary
 * - task: one user request; it holds a running-task slot from its first admitted job to its end.
 * - job: one unit of admission: a provider call (transform / generate batch) or storing one image.
 * - resource: a provider (with a key pool) or a store step (a concurrency limit).
 * - key: one provider credential with an RPM limit (sliding 60 s window) and an in-flight limit.
 * - weight: a user's fair-share weight, from the plan of their task.
 * All times are epoch milliseconds, passed in: the policy never reads a clock.
 */

export type JobKind = 'transform' | 'generate' | 'store';

export interface TaskView {
  id: string;
  userId: string;
  /** Fair-share weight of the task's plan. */
  weight: number;
  running: boolean;
  createdAtMs: number;
  /** Images of the task not yet finished, for the short-work preference. */
  remainingUnits: number;
  deadlineAtMs?: number | undefined;
}

export interface JobView {
  id: string;
  taskId: string;
  userId: string;
  kind: JobKind;
  /** Provider name, or the store step's resource name. */
  resource: string;
  /** Earliest start (retry backoff). */
  readyAtMs: number;
  /** Position of the job within its task, so a task's jobs go in order. */
  order: number;
  /** Provider calls: expected duration (informational; ETA estimates use it). */
  expectedMs?: number;
  /**
   * Provider calls: the requests this job makes (a batch on a model that returns fewer images per
   * request than the batch holds is several parallel requests). Each counts against the key's RPM
   * window and in-flight limit and the provider's concurrency. Store jobs: the images the job
   * stores, each counting against the store's concurrency. Default 1.
   */
  requests?: number | undefined;
}

export interface KeyView {
  id: string;
  rpm: number;
  concurrency: number;
  /** Requests in flight (a job of several requests counts each). */
  inFlight: number;
  /** False when disabled or its secret is missing: never chosen. */
  usable: boolean;
  cooldownUntilMs: number;
  /**
   * Start times (admission times for requests not started yet) of this key's requests whose
   * time is within the last window, sorted ascending. Requests admitted but not yet started
   * count regardless of age.
   */
  recentStartsMs: number[];
}

export interface ProviderView {
  name: string;
  /** Configured cap. */
  concurrency: number;
  /** AIMD-adjusted concurrency (≤ cap, ≥ 1). */
  effectiveConcurrency: number;
  /** Requests in flight across its keys. */
  inFlight: number;
  keys: KeyView[];
}

export interface StoreView {
  name: string;
  /** Images the store step may store at once. */
  concurrency: number;
  /** Images being stored: the sum of `requests` of its admitted and running jobs. */
  inFlight: number;
}

export interface Limits {
  maxRunningTasks: number;
  perUserRunningTasks: number;
}

export interface FairnessSettings {
  /** Seconds of waiting worth one full fair share: bounds how long anyone can be passed over. */
  agingSeconds: number;
  /** 0..1: how much a user's smaller remaining work moves them ahead. */
  shortWorkPreference: number;
  /** Size of the largest plan, to normalise remaining work. */
  maxUnits: number;
}

export interface PolicyInput {
  nowMs: number;
  limits: Limits;
  fairness: FairnessSettings;
  /** RPM window (60 s plus a safety margin). */
  rpmWindowMs: number;
  /** Free job slots on live workers; admission never runs ahead of the workers. */
  workerSlotsFree: number;
  /** Active (queued or running) tasks that have queued jobs, and running tasks. */
  tasks: TaskView[];
  /** Queued jobs, any readiness. */
  jobs: JobView[];
  providers: ProviderView[];
  stores: StoreView[];
  /** Jobs in flight (admitted or running) per user. */
  userInFlight: Record<string, number>;
  /**
   * Expected delay from admission to the call actually starting (a worker claiming the job).
   * A task that has not started is only admitted when `nowMs + dispatchMs` is not after its
   * deadline. Default 0.
   */
  dispatchMs?: number | undefined;
  /**
   * The driver's memory of when it last saw each user with a job in flight. Aging counts a
   * user's wait from the later of this and its oldest ready job, so a user that was just
   * served does not also collect credit for its backlog. Absent: aging counts from the oldest
   * ready job only (more FIFO-like under backlog).
   */
  userLastServedAtMs?: Record<string, number> | undefined;
}

export interface Admission {
  jobId: string;
  taskId: string;
  resource: string;
  /** The key chosen for a provider call. */
  keyId?: string;
  /** True when this admission starts the task (it takes a running-task slot). */
  startsTask: boolean;
  /**
   * Provider calls: the requests recorded against the key (the job's `requests`). Store jobs: the
   * images they store (their `requests`, held against the store's concurrency while in flight).
   */
  requests?: number;
}

export interface Decision {
  admissions: Admission[];
  /**
   * When the policy next expects it could admit something without any new event (a key's
   * window frees, a cool-down ends, a backoff expires). Undefined: only an event can help.
   */
  nextWakeAtMs?: number;
}
