/**
 * Credits refunded when a task ends: the share of the charge for the images it did not
 * deliver. Nothing delivered: everything back. Rounded down, so a refund never exceeds the
 * charge and partial sums never over-refund.
 */
export function refundFor(charged: number, imagesTotal: number, imagesDone: number): number {
  if (imagesTotal <= 0 || imagesDone <= 0) return charged;
  const undelivered = Math.max(0, imagesTotal - imagesDone);
  return Math.floor((charged * undelivered) / imagesTotal);
}

export type FinalState = 'succeeded' | 'partial' | 'failed' | 'canceled';

export function finalStateFor(imagesTotal: number, imagesDone: number, canceled: boolean): FinalState {
  if (canceled) return 'canceled';
  if (imagesDone >= imagesTotal) return 'succeeded';
  return imagesDone > 0 ? 'partial' : 'failed';
}

/** What one attempt of a task runs and was charged. Attempt 1: every image, the plan's price. */
export interface AttemptShare {
  images: number;
  credits: number;
}

/**
 * The refund when an attempt ends with `undelivered` images of the task still missing: the share
 * of that attempt's charge for them. An attempt runs exactly the images missing when it began, so
 * the ones missing at its end are its own undelivered ones. On attempt 1 this is refundFor.
 */
export function attemptRefund(attempt: AttemptShare, undelivered: number): number {
  return refundFor(attempt.credits, attempt.images, attempt.images - undelivered);
}

/**
 * What a retry of the `undelivered` images costs: exactly what the last attempt refunded for
 * them. So a task that ends delivering every image has cost its plan's price, and one that
 * ends partial the price of what it delivered, however many attempts it took.
 */
export function retryCharge(last: AttemptShare, undelivered: number): number {
  return attemptRefund(last, undelivered);
}

/** Only a task that ended with images missing (and not by cancel) can run them again. */
export function isRetryable(state: string): boolean {
  return state === 'failed' || state === 'partial';
}
