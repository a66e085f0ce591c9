/**
 * Additive-increase / multiplicative-decrease of a provider's effective concurrency.
 * A 429 means the provider (or a relay in front of it) is saturated beyond what its
 * configured limits say: back off fast, recover slowly.
 *
 * The decrease is once per congestion event, as TCP halves its window once per round trip
 * however many segments that round trip lost (RFC 5681 §3.1, RFC 6582): a burst of 429s
 * answering calls that were all in flight together says one thing, once. The event lasts
 * from its first 429 to the end of the cool-down that 429 imposed (`untilMs`); further 429s
 * inside it reset the success streak but do not shrink the concurrency again. A 429 after it
 * is a new event (the lower concurrency was still too high) and halves again.
 */
export interface AimdState {
  effectiveConcurrency: number;
  successStreak: number;
  /** End of the current congestion event (epoch ms); undefined before the first 429. */
  congestionUntilMs?: number | undefined;
}

export interface AimdSettings {
  cap: number;
  increaseAfter: number;
  decreaseFactor: number;
}

/** A 429 at `nowMs` that cools its key down until `untilMs`. */
export interface RateLimitEvent {
  nowMs: number;
  untilMs: number;
}

export function aimdOnSuccess(state: AimdState, s: AimdSettings): AimdState {
  const streak = state.successStreak + 1;
  const rest = state.congestionUntilMs === undefined ? {} : { congestionUntilMs: state.congestionUntilMs };
  if (state.effectiveConcurrency >= s.cap) return { effectiveConcurrency: s.cap, successStreak: 0, ...rest };
  if (streak >= s.increaseAfter)
    return {
      effectiveConcurrency: Math.min(s.cap, Math.floor(state.effectiveConcurrency) + 1),
      successStreak: 0,
      ...rest,
    };
  return { effectiveConcurrency: state.effectiveConcurrency, successStreak: streak, ...rest };
}

export function aimdOnRateLimit(state: AimdState, s: AimdSettings, event: RateLimitEvent): AimdState {
  if (state.congestionUntilMs !== undefined && event.nowMs < state.congestionUntilMs)
    return { ...state, successStreak: 0 };
  return {
    effectiveConcurrency: Math.max(1, state.effectiveConcurrency * s.decreaseFactor),
    successStreak: 0,
    congestionUntilMs: Math.max(event.nowMs, event.untilMs),
  };
}
