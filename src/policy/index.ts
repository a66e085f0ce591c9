export * from './types.ts';
export { cannotMeetDeadline, decide, effectiveWeight, providerLimit, userScore } from './admission.ts';
export { chooseKey, keyAvailableAtMs, keyCanStartNow, requestsInWindow } from './keys.ts';
export { aimdOnRateLimit, aimdOnSuccess, type AimdSettings, type AimdState } from './aimd.ts';
export { backoffDelayMs, decideRetry, type OutcomeKind, type RetryDecision } from './retry.ts';
export { finalStateFor, refundFor, type FinalState } from './credits.ts';
export { forgetIdle, lastServedFor, noteInFlight, noteServed, type ServiceMemory } from './service-memory.ts';
export * from './estimate.ts';
