import type { ResolvedPipeline, ResolvedProvider, ResolvedStep } from '../config/load.ts';
import type { AimdSettings, AimdState } from '../policy/aimd.ts';
import type { FinalState } from '../policy/credits.ts';
import type { OutcomeKind } from '../policy/retry.ts';
import type { JobKind, JobView } from '../policy/types.ts';
import type { KeyRecord, ProviderRecord, StoreRecord } from './records.ts';

/** The simulator's mutable world: tasks, jobs, users, keys, providers, stores, calls in flight. */

export interface SimJob {
  id: string;
  task: SimTask;
  step: ResolvedStep;
  kind: JobKind;
  resource: string;
  /** As the server's job rows (src/store/jobs.ts), admitted and running being one here. */
  state: 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
  firstIndex: number;
  count: number;
  attempts: number;
  maxAttempts: number;
  readyAtMs: number;
  order: number;
  /**
   * Provider calls: requests the adapter makes for it (src/providers/capabilities.ts). Store jobs:
   * their images (each holds one of the store's concurrency).
   */
  requests: number;
  /** Rate-limited outcomes so far, and when the first came (the rate-limit bound). */
  rateLimited: number;
  firstRateLimitedAtMs: number | undefined;
}

export interface SimTask {
  id: string;
  userId: string;
  plan: string;
  type: string;
  pipeline: ResolvedPipeline;
  weight: number;
  imagesTotal: number;
  /** The plan's price, and what the task's end refunded (src/policy/lifecycle.ts). */
  creditsCharged: number;
  creditsRefunded: number;
  createdAtMs: number;
  deadlineAtMs: number | undefined;
  state: 'queued' | 'running' | FinalState;
  /** The step the task is at: its first, then the step its newest jobs belong to. */
  stage: string;
  startedAtMs: number | undefined;
  finishedAtMs: number | undefined;
  done: number;
  failed: number;
  canceled: boolean;
  /** Queued jobs, sorted by order. */
  queued: SimJob[];
  inFlight: number;
  /** Per transform step: its jobs not yet succeeded. */
  transformLeft: Map<number, number>;
}

export interface SimUser {
  id: string;
  running: SimTask[];
  /** Not started, in creation order. */
  queued: SimTask[];
  inFlight: number;
}

/** What the provider itself enforces (the scenario's providerLimits, else the configured limits). */
export interface SideLimit {
  rpm: number;
  concurrency: number;
  accepted: number[];
  inFlight: number;
}

export interface KeyState {
  id: string;
  rpm: number;
  concurrency: number;
  usable: boolean;
  inFlight: number;
  /** The scheduler's request log: admission times, ascending. */
  starts: number[];
  cooldownUntilMs: number;
  side: SideLimit;
  rec: KeyRecord;
}

export interface ProviderState {
  cfg: ResolvedProvider;
  aimd: AimdState;
  inFlight: number;
  keys: KeyState[];
  side: SideLimit;
  concurrencyRetryAfterMs: number;
  aimdSettings: AimdSettings;
  rec: ProviderRecord;
}

export interface StoreState {
  name: string;
  concurrency: number;
  inFlight: number;
  rec: StoreRecord;
}

export type Outcome = { kind: 'success' } | { kind: Exclude<OutcomeKind, 'success'>; retryAfterMs?: number };

export interface Flight {
  job: SimJob;
  keyId: string | undefined;
  startAtMs: number;
  accepted: boolean;
  /** Requests of this call the provider accepted (each holds one of its in-flight slots). */
  acceptedRequests: number;
  outcome: Outcome;
}

export function jobView(j: SimJob): JobView {
  return {
    id: j.id,
    taskId: j.task.id,
    userId: j.task.userId,
    kind: j.kind,
    resource: j.resource,
    readyAtMs: j.readyAtMs,
    order: j.order,
    requests: j.requests,
  };
}

/** Keeps a task's queued jobs sorted by their order. */
export function insertByOrder(queue: SimJob[], job: SimJob): void {
  let lo = 0;
  let hi = queue.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (queue[mid]!.order < job.order) lo = mid + 1;
    else hi = mid;
  }
  queue.splice(lo, 0, job);
}

/** Drops the leading entries of an ascending list that have left the window ending at `now`. */
export function pruneWindow(times: number[], now: number, windowMs: number): void {
  let n = 0;
  while (n < times.length && times[n]! + windowMs <= now) n++;
  if (n > 0) times.splice(0, n);
}

/** Simulated durations are whole milliseconds, so event times add up exactly. */
export function ms(x: number): number {
  return Math.max(0, Math.round(x));
}
