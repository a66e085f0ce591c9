import type { Config } from '../config/load.ts';
import { decideWithUnread } from '../policy/admission.ts';
import { policySettings } from '../policy/policy-input.ts';
import type { Decision } from '../policy/types.ts';
import type { Queryable } from '../store/db.ts';
import { readFairOrder, readQueueHead, type CapacitySnapshot, type QueueHead } from '../store/schedule.ts';
import { buildPolicyInput, headLimits } from './policy-input.ts';

/** Slack below the database's score bound: float8 in SQL and JavaScript may round apart. */
const BOUND_SLACK = 1e-9;

export interface PassPlan {
  head: QueueHead;
  decision: Decision;
  /** Users read in fair-share order (users always read are not counted). */
  usersRead: number;
  /** Reads of the queue this pass took (more when the first users read did not decide it). */
  rounds: number;
}

/**
 * One pass's read and decision, in time bounded by what it can admit rather than by the users
 * with queued work. Users always read: those with a task running, a job in flight or a task
 * retried. The others (tasks not started yet) are read in fair-share order, as many as could
 * take the free capacity, and decide() checks that the users not read could not have changed
 * its decision (policy decideWithUnread); when they could, the pass reads four times as many.
 * The decision is exactly decide() on the whole queue (test/store/schedule-head.test.ts).
 */
export async function planPass(
  q: Queryable,
  config: Config,
  capacity: CapacitySnapshot,
  rpmWindowMs: number,
  dispatchMs: number,
  /** Tasks to take in fair-share order in the first read (tests); default from the free capacity. */
  firstTake?: number,
): Promise<PassPlan> {
  const limits = headLimits(config, capacity, rpmWindowMs, dispatchMs);
  const { fairness } = policySettings(config, rpmWindowMs, dispatchMs);
  const inFlightUsers = [...new Set(capacity.inFlight.map((r) => r.user_id))];
  // Tasks not started have jobs only on the resource their pipeline starts on.
  const startResources = limits.startsOn.map((s) => s.resource);
  const admissible = limits.perResource
    .filter((r) => startResources.includes(r.resource))
    .reduce((n, r) => n + r.k - 1, 0);
  let take = firstTake ?? 2 * (admissible + 4);
  for (let rounds = 1; ; rounds++) {
    const order = await readFairOrder(
      q,
      {
        nowMs: capacity.nowMs,
        agingSeconds: fairness.agingSeconds,
        shortWorkPreference: fairness.shortWorkPreference,
        maxUnits: fairness.maxUnits,
      },
      take,
    );
    const head = await readQueueHead(q, { ...limits, users: [...inFlightUsers, ...order.users] });
    const input = buildPolicyInput(config, { ...capacity, ...head }, rpmWindowMs, dispatchMs);
    const unread =
      order.bound === undefined
        ? undefined
        : {
            scoreAtLeast: order.bound - BOUND_SLACK * (1 + Math.abs(order.bound)),
            resources: startResources,
          };
    const { decision, exact } = decideWithUnread(input, unread);
    if (exact) return { head, decision, usersRead: order.users.length, rounds };
    take *= 4;
  }
}
