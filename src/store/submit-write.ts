import type { Queryable } from './db.ts';
import { jobsAsRecords, type NewJob } from './jobs.ts';
import type { NewTask, TaskRow } from './tasks.ts';

/**
 * The submits' writes in one statement, darkroom_submit_many (migrations 0020, 0022, 0023, 0024): the queue
 * counter locked first (the lock order of 0022), then for each submit the task with its first
 * jobs, its `queued` event, its webhook and first estimate, the user and its grant, the charge,
 * and last its counts (the key's rate window, the queue bound). Sent on its own it is one round
 * trip and the server commits it at once, so the counter rows every submit shares are locked
 * only inside the server, never across a round trip to a busy API process; several submits in
 * one statement (src/pipeline/submit.ts, the group commit) lock them once.
 * Each submit is refused alone: a refusal rolls back its own writes, not its neighbours'.
 * A batch of 16 or more with no refusal is written set-based, one statement per table (0023,
 * 0024); a smaller one, or one with a refusal, goes item by item, each in its own subtransaction.
 */

export interface SubmitWrite {
  task: NewTask;
  /** The first step's jobs. */
  jobs: NewJob[];
  webhook: { url: string; stages: boolean } | undefined;
  /**
   * The newcomer's first estimate (the forecast pass refines it). Its position is the one the
   * queue counter gives it in the statement (tasks queued ahead of it), not a field here.
   */
  estimate: { startAtMs: number; finishAtMs: number };
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

/** What a submit's answer needs of its task. */
export interface SubmittedTask {
  id: string;
  state: TaskRow['state'];
  images_total: number;
  credits_charged: number;
  created_at: Date;
}

export type SubmitWriteResult =
  /** Stored: the task, and the tasks queued ahead of it when it joined the queue. */
  | { outcome: 'queued'; task: SubmittedTask; position: number }
  /** The order already has an active task: nothing written. */
  | { outcome: 'order_taken' }
  /** The balance is short of the plan's credits: nothing written. */
  | { outcome: 'short' }
  /** A limit refused the submit: nothing written; the counts it was refused on. */
  | { outcome: 'refused'; counts: SubmitCounts };

interface ItemRow {
  o_item: number;
  o_outcome: 'queued' | 'order_taken' | 'short' | 'refused';
  o_detail: string | null;
  o_id: string | null;
  o_state: TaskRow['state'] | null;
  o_images_total: number | null;
  o_credits_charged: number | null;
  o_created_at: Date | null;
  o_position: number | null;
}

/** One submit as the SQL submit functions take it (an element of their `items` JSON array). */
export function itemOf(w: SubmitWrite): Record<string, unknown> {
  const t = w.task;
  return {
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
    jobs: jobsAsRecords(w.jobs),
    webhook_url: w.webhook?.url ?? null,
    webhook_stages: w.webhook?.stages ?? false,
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
}

function resultOf(r: ItemRow): SubmitWriteResult {
  switch (r.o_outcome) {
    case 'queued':
      return {
        outcome: 'queued',
        task: {
          id: r.o_id!,
          state: r.o_state!,
          images_total: r.o_images_total!,
          credits_charged: r.o_credits_charged!,
          created_at: r.o_created_at!,
        },
        position: r.o_position!,
      };
    case 'order_taken':
    case 'short':
      return { outcome: r.o_outcome };
    case 'refused': {
      const c = JSON.parse(r.o_detail!) as {
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
  }
}

/**
 * Writes the submits in order, in one statement; the results in the same order. Throws only for
 * an unexpected error, which wrote nothing (refusals are results).
 */
export async function writeSubmits(
  q: Queryable,
  writes: readonly SubmitWrite[],
): Promise<SubmitWriteResult[]> {
  const { rows } = await q.query<ItemRow>(
    `SELECT o_item, o_outcome, o_detail, o_id, o_state, o_images_total, o_credits_charged, o_created_at,
            o_position
       FROM darkroom_submit_many($1::jsonb)`,
    [JSON.stringify(writes.map(itemOf))],
  );
  if (rows.length !== writes.length)
    throw new Error(`submit batch: ${rows.length} results for ${writes.length}`);
  return [...rows].sort((a, b) => a.o_item - b.o_item).map(resultOf);
}
