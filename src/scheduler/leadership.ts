import type { Logger } from 'pino';
import type { Db } from '../store/db.ts';
import { acquireLeadership, resignLeadership } from '../store/leader.ts';
import { every } from './every.ts';

export interface Leadership {
  /** The term while this candidate holds a lease it renewed in time; undefined otherwise. */
  term(): number | undefined;
  /** A fenced write found the term gone: stop acting as leader until the next renewal. */
  lost(): void;
  stop(): Promise<void>;
}

/**
 * The leader lease on its own timer, apart from admission: renewed every quarter of the lease
 * whatever an admission pass is doing. This process counts itself leader only until a
 * sixth of the lease before the lease it last renewed runs out, counted from when the renewal
 * was sent: a renewal that is late (database slow or unreachable, process paused) makes it
 * step down before a standby may take over. Standbys try on the same timer.
 */
export function startLeadership(
  db: Db,
  candidate: string,
  leaseMs: number,
  log: Logger,
  onGained: () => void,
): Leadership {
  let current: number | undefined;
  let validUntil = 0;
  const renew = async () => {
    const sentAt = performance.now();
    const term = await acquireLeadership(db, candidate, leaseMs).catch((error: unknown) => {
      current = undefined;
      throw error;
    });
    const was = current;
    const wasValid = performance.now() < validUntil;
    current = term;
    validUntil = sentAt + leaseMs - leaseMs / 6;
    if (term !== undefined && term !== was) log.info({ candidate, term }, 'scheduler leadership taken');
    else if (term === undefined && was !== undefined) log.warn({ candidate }, 'scheduler leadership lost');
    // Taken, or back after a late renewal: admit now rather than at the next poll.
    if (term !== undefined && (term !== was || !wasValid)) onGained();
  };
  const timer = every('leader lease renewal', () => Math.max(50, Math.floor(leaseMs / 4)), renew, log);
  return {
    term: () => (current !== undefined && performance.now() < validUntil ? current : undefined),
    lost() {
      current = undefined;
    },
    async stop() {
      await timer.stop();
      if (current !== undefined) await resignLeadership(db, candidate).catch(() => {});
      current = undefined;
    },
  };
}
