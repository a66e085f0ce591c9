import { backoffDelayMs } from '../policy/retry.ts';
import { isConnectionError } from '../store/db.ts';

/** Backoff between tries of an outcome write on a lost connection: 100 ms doubling to 2 s, full jitter. */
const BASE_MS = 100;
const MAX_MS = 2_000;
const MIN_MS = 20;

/**
 * The attempt's lease ran out (or was taken) while its outcome could not be written: the outcome
 * belongs to nobody now, the reaper hands the job to another attempt.
 */
export class LeaseRanOut extends Error {
  constructor(cause: unknown) {
    super('lease ran out while the database was unreachable; the outcome is given up', { cause });
    this.name = 'LeaseRanOut';
  }
}

export interface OutcomeRetryOptions {
  /** performance.now() by which the lease may have expired (the last renewal's start + leaseMs). */
  leaseUntil: () => number;
  /** Aborted when the heartbeat finds the lease lost or shutdown released the job. */
  gone: () => boolean;
  random: () => number;
  onRetry: (error: unknown, tryNumber: number, delayMs: number) => void;
}

/**
 * Runs an outcome write, running it again while it fails because the connection to the database
 * was lost, for as long as the attempt's lease lasts. A provider result already paid for is then
 * kept across a database restart or a dropped connection instead of being thrown away (and the call
 * repeated by the next attempt). Running it again is safe because the write is fenced by the lease
 * token: after a lost COMMIT that did land, or once the lease went to another attempt, the fenced
 * write finds no running job of this token and changes nothing.
 */
export async function retryOnLostConnection<T>(
  write: () => Promise<T>,
  options: OutcomeRetryOptions,
): Promise<T> {
  for (let tryNumber = 1; ; tryNumber++) {
    try {
      return await write();
    } catch (error) {
      if (!isConnectionError(error)) throw error;
      const delayMs = Math.max(MIN_MS, backoffDelayMs(tryNumber, BASE_MS, MAX_MS, options.random()));
      if (options.gone() || performance.now() + delayMs >= options.leaseUntil()) throw new LeaseRanOut(error);
      options.onRetry(error, tryNumber, delayMs);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
