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
