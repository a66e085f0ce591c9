/**
 * An initial state for the simulator: what the server holds at one instant (tasks queued and
 * running with the work they have left, jobs in flight and when they will end, each key's
 * request log and cool-down, the providers' AIMD concurrency, the live worker slots, the aging
 * memory). `Simulation` starts from it instead of from a scenario's arrivals, so the same
 * engine that plans a scenario also forecasts the live queue (src/sim/forecast.ts).
 *
 * All times are milliseconds on the simulation's clock (the forecast uses "ms since the
 * snapshot", so the seed's `nowMs` is 0 and past events are negative).
 */

/** A queued job of a seeded task. */
export interface SeedJob {
  stepIndex: number;
  /** First image (generate, store) or call index (transform). */
  firstIndex: number;
  count: number;
  /** Attempts already spent. */
  attempts: number;
  readyAtMs: number;
}

/** A job admitted or running at the seed's instant. */
export interface SeedFlight {
  stepIndex: number;
  firstIndex: number;
  count: number;
  attempts: number;
  /** The key a provider call holds (an unknown id falls back to the provider's first key). */
  keyId?: string | undefined;
  /** When it started (or was admitted), for busy-time accounting. */
  startedAtMs: number;
  /** When the simulation ends it, successfully (≥ the seed's nowMs). */
  endsAtMs: number;
}

export interface SeedTask {
  id: string;
  userId: string;
  plan: string;
  /** Task type: the pipeline. A task of a type no longer configured is left out. */
  type: string;
  weight: number;
  imagesTotal: number;
  done: number;
  failed: number;
  createdAtMs: number;
  deadlineAtMs?: number | undefined;
  state: 'queued' | 'running';
  startedAtMs?: number | undefined;
  /** Cancel requested: nothing more starts; what is in flight finishes. */
  canceled?: boolean | undefined;
  /**
   * When the task enters the simulation (default: the seed's nowMs). A task submitted after the
   * state was read arrives later, as a new submission would.
   */
  arriveAtMs?: number | undefined;
  /**
   * Its queued jobs. Absent: the first step's jobs, all ready since `createdAtMs` (a queued task
   * has exactly those).
   */
  queued?: SeedJob[] | undefined;
  inFlight?: SeedFlight[] | undefined;
}

export interface SeedKey {
  provider: string;
  id: string;
  /** Request log (admission time for requests not started yet), ascending. */
  startsMs: number[];
  cooldownUntilMs: number;
  /** False: disabled or its secret is missing where the server runs (the planner counts every key). */
  usable?: boolean | undefined;
}

export interface SimSeed {
  nowMs: number;
  /** Job slots of the live workers. */
  workerSlots: number;
  tasks: SeedTask[];
  keys: SeedKey[];
  /** Provider name → AIMD-effective concurrency (absent: the configured cap). */
  effectiveConcurrency: Record<string, number>;
  /** User → when last seen with a job in flight (aging). */
  lastServedAtMs: Record<string, number>;
}
