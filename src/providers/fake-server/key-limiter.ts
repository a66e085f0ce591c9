import type { FakeKeyOptions, FakeKeyStats } from './types.ts';

export const WINDOW_MS = 60_000;

export type Admission =
  { ok: true; release: () => void } | { ok: false; reason: 'rpm' | 'concurrency'; retryAfterMs: number };

/**
 * One simulated key: a sliding log of accepted request times (rpm) and an in-flight count (concurrency).
 * A request at `now` is accepted only while fewer than `rpm` acceptances lie in (now - 60 s, now], so no
 * half-open 60 s window ever holds more than `rpm` acceptances.
 */
export class KeyLimiter {
  readonly key: FakeKeyOptions;
  private readonly enforceRpm: boolean;
  /** Acceptance times still inside the window, ascending. */
  private window: number[] = [];
  private inFlight = 0;
  private counters: FakeKeyStats = {
    requests: 0,
    rejected_429: 0,
    max_in_flight: 0,
    max_requests_in_any_60s_window: 0,
  };

  constructor(key: FakeKeyOptions, options: { enforceRpm: boolean }) {
    this.key = key;
    this.enforceRpm = options.enforceRpm;
  }

  /** Counts a request that presented this key, before any decision about it. */
  noteRequest(): void {
    this.counters.requests += 1;
  }

  noteRejected(): void {
    this.counters.rejected_429 += 1;
  }

  /** Accepted requests inside (now - 60 s, now]. */
  countInWindow(now: number): number {
    this.prune(now);
    return this.window.length;
  }

  /** Time until the oldest acceptance in the window leaves it (0 when the window is empty). */
  windowResetMs(now: number): number {
    this.prune(now);
    const oldest = this.window[0];
    return oldest === undefined ? 0 : oldest + WINDOW_MS - now;
  }

  tryAcquire(now: number, options: { rpm?: boolean; concurrency?: boolean } = {}): Admission {
    this.prune(now);
    if (this.enforceRpm && options.rpm !== false && this.window.length >= this.key.rpm) {
      // The acceptance that must leave before one more fits.
      const blocking = this.window[this.window.length - this.key.rpm] ?? now;
      return { ok: false, reason: 'rpm', retryAfterMs: Math.max(1, blocking + WINDOW_MS - now) };
    }
    if (options.concurrency !== false && this.inFlight >= this.key.concurrency) {
      return { ok: false, reason: 'concurrency', retryAfterMs: 0 };
    }
    this.recordAcceptance(now);
    return { ok: true, release: this.holdSlot() };
  }

  /** Records an acceptance without a concurrency slot (ComfyUI queues instead of rejecting). */
  recordAcceptance(now: number): void {
    this.prune(now);
    this.window.push(now);
    this.counters.max_requests_in_any_60s_window = Math.max(
      this.counters.max_requests_in_any_60s_window,
      this.window.length,
    );
  }

  /** Takes one in-flight slot; the returned function gives it back (idempotent). */
  holdSlot(): () => void {
    this.inFlight += 1;
    this.counters.max_in_flight = Math.max(this.counters.max_in_flight, this.inFlight);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
    };
  }

  get inFlightNow(): number {
    return this.inFlight;
  }

  stats(): FakeKeyStats {
    return { ...this.counters };
  }

  reset(): void {
    this.window = [];
    this.counters = {
      requests: 0,
      rejected_429: 0,
      max_in_flight: this.inFlight,
      max_requests_in_any_60s_window: 0,
    };
  }

  private prune(now: number): void {
    // Every window ending at or after `now` excludes acceptances at or before now - 60 s; the maximum over
    // windows ending at each acceptance (taken in recordAcceptance) is therefore exact.
    let drop = 0;
    while (drop < this.window.length && (this.window[drop] ?? 0) <= now - WINDOW_MS) drop += 1;
    if (drop > 0) this.window.splice(0, drop);
  }
}
