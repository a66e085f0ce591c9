import type { Queryable } from './db.ts';
import { jobsAsJson, type NewJob } from './jobs.ts';
import type { NewTask, TaskRow } from './tasks.ts';

/**
 * The submit's writes in one statement, darkroom_submit (migration 0016): the task with its
 * first jobs, its `queued` event, its webhook and first estimate, the user and its grant, the
 * charge, and last the counters every submit shares (the queue bound, the key's rate window).
 * Sent on its own it is one round trip and the server commits it at once, so those counter rows
 * are locked only inside the server, never across a round trip to a busy API process.
 */

export interface SubmitWrite {
  task: NewTask;
  /** The first step's jobs. */
  jobs: NewJob[];
  webhook: { url: string; stages: boolean } | undefined;
  /** The newcomer's first estimate (the forecast pass refines it). */
  estimate: { position: number; startAtMs: number; finishAtMs: number };
  /** The initial grant of a user darkroom has not seen; undefined: do not create the user. */
  grant: number | undefined;
  /** Rate buckets counted: the user's, then (optionally) the key's. */
  buckets: [string] | [string, string];
  windowStart: Date;
  limits: { maxQueued: number; perUserQueued: number; userPerMinute: number; keyPerMinute: number };
}

export interface SubmitCounts {
  /** The user's queued tasks, this one included. */
  userQueued: number;
  /** Submits in the current rate window, this one included. */
  userInWindow: number;
  keyInWindow: number | undefined;
  /** Tasks queued ahead of this one; undefined (not counted) when the queue is full. */
  queuedAhead: number | undefined;
}

export type SubmitWriteResult =
  | { outcome: 'queued'; task: TaskRow }
  /** The order already has an active task: nothing written. */
  | { outcome: 'order_taken' }
  /** The balance is short of the plan's credits: nothing written. */
  | { outcome: 'short' }
  /** A limit refused the submit: nothing written; the counts it was refused on. */
  | { outcome: 'refused'; counts: SubmitCounts };

const SHORT = 'DR001';
const REFUSED = 'DR002';

export async function writeSubmit(q: Queryable, w: SubmitWrite): Promise<SubmitWriteResult> {
  const t = w.task;
  const p = {
    id: t.id,
    user_id: t.userId,
    order_id: t.orderId,
    type: t.type,
    plan: t.plan,
    prompt: t.prompt,
    inputs: t.inputs,
    params: t.params,
    seed: t.seed,
    weight: t.weight,
    stage: t.stage,
    images_total: t.imagesTotal,
    credits: t.creditsCharged,
    deadline_seconds: t.deadlineSeconds,
    webhook_url: w.webhook?.url ?? null,
    webhook_stages: w.webhook?.stages ?? false,
    position: w.estimate.position,
    start_ms: w.estimate.startAtMs,
    finish_ms: w.estimate.finishAtMs,
    grant: w.grant ?? null,
    buckets: w.buckets,
    window_start: w.windowStart.toISOString(),
    max_queued: w.limits.maxQueued,
    per_user_queued: w.limits.perUserQueued,
    user_per_minute: w.limits.userPerMinute,
    key_per_minute: w.limits.keyPerMinute,
  };
  try {
    const { rows } = await q.query<TaskRow>('SELECT * FROM darkroom_submit($1::jsonb, $2::jsonb)', [
      JSON.stringify(p),
      jobsAsJson(w.jobs),
    ]);
    return rows[0] ? { outcome: 'queued', task: rows[0] } : { outcome: 'order_taken' };
  } catch (error) {
    const e = error as { code?: unknown; detail?: unknown };
    if (e.code === SHORT) return { outcome: 'short' };
    if (e.code === REFUSED && typeof e.detail === 'string') {
      const c = JSON.parse(e.detail) as {
        user_queued: number;
        user_window: number;
        key_window: number | null;
        ahead: number | null;
      };
      return {
        outcome: 'refused',
        counts: {
          userQueued: c.user_queued,
          userInWindow: c.user_window,
          keyInWindow: c.key_window ?? undefined,
          queuedAhead: c.ahead ?? undefined,
        },
      };
    }
    throw error;
  }
}
