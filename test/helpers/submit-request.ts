import type { SubmitRequest } from '../../src/pipeline/submit.ts';

/** A Free photography submit for `userId` as the API would pass it to submitTask, with `extra` over it. */
export function submitRequest(userId: string, extra: Partial<SubmitRequest> = {}): SubmitRequest {
  return {
    userId,
    orderId: undefined,
    type: 'photography',
    plan: 'free',
    prompt: '',
    inputs: [],
    params: {},
    deadlineSeconds: undefined,
    idempotencyKey: undefined,
    requestHash: 'h',
    ...extra,
  };
}
