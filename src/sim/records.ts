import type { FinalState } from '../policy/credits.ts';

/** What a simulated run records: the raw material of the planner's report. */

export interface TaskRecord {
  id: string;
  userId: string;
  plan: string;
  type: string;
  images: number;
  submittedMs: number;
  /** First job start (admission + dispatch). */
  startedMs: number | undefined;
  finishedMs: number | undefined;
  state: FinalState | 'unfinished';
  done: number;
  failed: number;
}

export interface KeyRecord {
  id: string;
  rpm: number;
  concurrency: number;
  /** Requests sent with this key (accepted or not). */
  requests: number;
  rateLimited: number;
  busyMs: number;
  /** Most requests the provider accepted on this key in any 60 s window. */
  maxIn60s: number;
  maxInFlight: number;
}

export interface ProviderRecord {
  name: string;
  /** Calls it can run at once: min(concurrency, Σ usable keys' concurrency). */
  capacity: number;
  /** Jobs run on it (a batch is one call). */
  calls: number;
  /** HTTP requests those calls made (a batch on a one-image-per-request model makes one per image). */
  requests: number;
  rateLimited: number;
  busyMs: number;
  minEffectiveConcurrency: number;
  keys: KeyRecord[];
}

export interface StoreRecord {
  name: string;
  /** Images it stores at once. */
  concurrency: number;
  /** Store job attempts (a job holds up to `concurrency` images of one call's batch). */
  jobs: number;
  /** Images those attempts stored or tried to store. */
  images: number;
  /** Image-time: each job's duration times its images. */
  busyMs: number;
}

export interface DepthSeries {
  tMs: number[];
  queued: number[];
  running: number[];
}

export interface SimRun {
  startMs: number;
  endMs: number;
  workerSlots: number;
  tasks: TaskRecord[];
  rejected: Array<{ plan: string; atMs: number }>;
  providers: ProviderRecord[];
  stores: StoreRecord[];
  depth: DepthSeries;
  /** Time-weighted integral of queued tasks (task·ms), for the mean depth. */
  queuedAreaMs: number;
  errors: Record<'transient' | 'timeout' | 'permanent', number>;
  retries: number;
  decisions: number;
  stoppedEarly: boolean;
}

export interface CallStart {
  atMs: number;
  provider: string;
  keyId: string;
  accepted: boolean;
}
