export * from './types.ts';
export { decide, userScore } from './admission.ts';
export { chooseKey, keyAvailableAtMs, keyCanStartNow, requestsInWindow } from './keys.ts';
export { aimdOnRateLimit, aimdOnSuccess, type AimdSettings, type AimdState } from './aimd.ts';
export { backoffDelayMs, decideRetry, type OutcomeKind, type RetryDecision } from './retry.ts';
export { finalStateFor, refundFor, type FinalState } from './credits.ts';
export * from './estimate.ts';
