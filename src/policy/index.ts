export * from './types.ts';
export {
  cannotMeetDeadline,
  decide,
  effectiveWeight,
  providerFits,
  providerLimit,
  userScore,
} from './admission.ts';
export { chooseKey, keyAvailableAtMs, keyCanStartNow, requestsInWindow } from './keys.ts';
export { aimdOnRateLimit, aimdOnSuccess, type AimdSettings, type AimdState } from './aimd.ts';
export {
  backoffDelayMs,
  decideRetry,
  rateLimitBoundReached,
  type OutcomeKind,
  type RateLimitHistory,
  type RetryDecision,
} from './retry.ts';
export {
  attemptRefund,
  finalStateFor,
  isRetryable,
  refundFor,
  retryCharge,
  type AttemptShare,
  type FinalState,
} from './credits.ts';
export { forgetIdle, lastServedFor, noteInFlight, noteServed, type ServiceMemory } from './service-memory.ts';
export * from './estimate.ts';
export { nextPacificMidnightMs, UNHINTED_REST_CAP_MS, unhintedRestMs } from './rests.ts';
export {
  meanDispatchMs,
  policySettings,
  toPolicyInput,
  type PolicySettings,
  type QueueView,
} from './policy-input.ts';
