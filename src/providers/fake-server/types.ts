import type { ComfyFakeStats } from './comfyui.ts';

export interface FakeKeyOptions {
  id: string;
  /** The credential callers present; when absent, callers present the key id itself. */
  secret?: string;
  /** Accepted requests allowed in any sliding 60 s window. Ignored by the ComfyUI protocol. */
  rpm: number;
  /** Requests in flight at once; for ComfyUI, the GPU slots (prompts executing at once). */
  concurrency: number;
}

export interface FakeProviderConfig {
  name: string;
  keys: FakeKeyOptions[];
  /**
   * Time from an accepted request to its answer, generation included (as a real provider's latency):
   * the images are rendered from the request's arrival, and the answer leaves at the later of the
   * latency and the rendering. ComfyUI spreads it over the sampler's steps and renders after them.
   */
  latencyMs: number;
  /** Each request's latency is latencyMs plus a uniform offset in [-jitterMs, +jitterMs] (never below 0). */
  jitterMs: number;
  /** Probability 0..1 that an accepted request fails with a random 500 or 503. */
  errorRate: number;
  seed?: number;
  /**
   * Retry-After advertised on 429s that the rpm window did not cause (concurrency, scripted `http429`);
   * rpm rejections always advertise exactly when the window frees a slot.
   */
  retryAfterSeconds?: number;
}

export interface FakeProviderOptions {
  providers: FakeProviderConfig[];
  /** Injected clock (epoch ms) for rate windows, file expiry and timestamps. Timers still run in real time. */
  now?: () => number;
  /** Waits out a Gemini or OpenAI request's latency (tests hold it); a real timer by default. */
  sleep?: (ms: number) => Promise<void>;
  /** How long a `trickle` fault takes to send its whole body. Default 2000 ms. */
  trickleMs?: number;
  /** How long `/files/...` URLs of OpenAI url results stay downloadable. Default 10 minutes. */
  fileTtlMs?: number;
  /** Edge of the square images Gemini returns (OpenAI honours `size`, ComfyUI the workflow). Default 256. */
  imageSize?: number;
}

export const FAULTS = [
  'http500',
  'http503',
  'hang',
  'trickle',
  'malformed_json',
  'refusal',
  'no_image',
  'not_an_image',
  'http429',
  /** A 429 with no retry hint (Gemini: no google.rpc.RetryInfo; OpenAI: no retry-after, no reset header; ComfyUI: like http429). */
  'http429_no_retry_info',
  /** A 429 naming a per-day quota (Gemini: QuotaFailure `…PerDay…`; other protocols: like http429). */
  'http429_daily',
  /** A broken body: the headers promise the whole answer, half of it is sent, then the connection closes. */
  'truncated',
  /** The connection is closed once the request is accepted, before any answer. */
  'reset',
] as const;

export type Fault = (typeof FAULTS)[number];

export interface FakeKeyStats {
  /** Every request that presented this key, accepted or not. */
  requests: number;
  rejected_429: number;
  max_in_flight: number;
  /** Most ACCEPTED requests inside any 60 s window (exact, from the acceptance log). */
  max_requests_in_any_60s_window: number;
}

/** Counters of one simulated provider across its keys (Gemini and OpenAI protocols). */
export interface FakeProviderTotals {
  /** Most requests in flight at once over all keys (accepted, not yet answered or abandoned). */
  max_in_flight: number;
  /** 429s by cause: the key's rpm window, its concurrency, or a scripted fault. */
  rejected: { rpm: number; concurrency: number; scripted: number };
  /** Scripted faults not yet applied. */
  faults_queued: number;
}

export interface FakeStats {
  providers: Record<
    string,
    { keys: Record<string, FakeKeyStats>; totals: FakeProviderTotals; comfyui?: ComfyFakeStats }
  >;
}

export interface FakeProviderHandle {
  /** Base URL without trailing slash; a provider named `x` lives at `${url}/p/x`. */
  url: string;
  close(): Promise<void>;
  stats(): FakeStats;
  /** Simulate a ComfyUI process restart: drop queue, history, files and websockets (all providers, or one). */
  restart(provider?: string): void;
}
