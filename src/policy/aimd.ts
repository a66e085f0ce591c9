/**
 * Additive-increase / multiplicative-decrease of a provider's effective concurrency.
 * A 429 means the provider (or a relay in front of it) is saturated beyond what its
 * configured limits say: back off fast, recover slowly.
 */
export interface AimdState {
  effectiveConcurrency: number;
  successStreak: number;
}

export interface AimdSettings {
  cap: number;
  increaseAfter: number;
  decreaseFactor: number;
}

export function aimdOnSuccess(state: AimdState, s: AimdSettings): AimdState {
  const streak = state.successStreak + 1;
  if (state.effectiveConcurrency >= s.cap) return { effectiveConcurrency: s.cap, successStreak: 0 };
  if (streak >= s.increaseAfter)
    return {
      effectiveConcurrency: Math.min(s.cap, Math.floor(state.effectiveConcurrency) + 1),
      successStreak: 0,
    };
  return { effectiveConcurrency: state.effectiveConcurrency, successStreak: streak };
}

export function aimdOnRateLimit(state: AimdState, s: AimdSettings): AimdState {
  return {
    effectiveConcurrency: Math.max(1, state.effectiveConcurrency * s.decreaseFactor),
    successStreak: 0,
  };
}
