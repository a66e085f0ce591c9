import { performance } from 'node:perf_hooks';
import { type Api, NetworkError, delay, errorCode, mapLimit } from './loadtest-http.ts';
import type { Submission } from './loadtest-workload.ts';

/**
 * Drives a running server: submits each task at its time (bounded concurrency, the same
 * Idempotency-Key on every attempt, retries on network errors and on 409
 * `idempotency_key_in_flight`), then follows the tasks by listing each user's tasks with
 * backoff until every one ended or the time limit passed.
 */

export const FINAL_STATES = ['succeeded', 'partial', 'failed', 'canceled'] as const;

export interface ImageLink {
  index: number;
  url: string;
  thumbnail_url: string;
  width: number;
  height: number;
}

/** The fields of the API's task object the load test reads (docs/api.md, "The task object"). */
export interface TaskObject {
  id: string;
  user_id: string;
  order_id: string | null;
  plan: string;
  state: string;
  progress: { done: number; failed: number; total: number };
  images: ImageLink[];
  error: string | null;
  credits_charged: number;
  credits_refunded: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export function isFinal(state: string): boolean {
  return (FINAL_STATES as readonly string[]).includes(state);
}

export interface SubmitRecord {
  submission: Submission;
  /** First attempt sent, ms after the run started. */
  sentAtMs: number;
  /** First attempt sent → final answer, retries included. */
  latencyMs: number;
  attempts: number;
  networkRetries: number;
  inFlightRetries: number;
  /** Final HTTP status; undefined when the last attempt got no answer. */
  status: number | undefined;
  /** error.code of a refused submit, or the network error's code. */
  code: string | undefined;
  taskId: string | undefined;
  imagesTotal: number | undefined;
  creditsCharged: number | undefined;
  deduplicated: boolean;
}

export interface DriveOptions {
  /** Submits in flight at once at most. */
  concurrency: number;
  /** Attempts after a network error. */
  retries: number;
  /** Wait this long after the last submit for tasks to end. */
  timeoutMs: number;
  /** Longest pause between two follow rounds. */
  pollMaxMs: number;
}

export interface DriveHooks {
  onSubmitted?: (record: SubmitRecord) => void;
  onFollow?: (state: { ended: number; open: number }) => void;
}

export interface DriveResult {
  startedAt: number;
  records: SubmitRecord[];
  /** Latest view of each accepted task, by id. */
  tasks: Map<string, TaskObject>;
  /** How late a submit was sent after its scheduled time, at most (the driver keeping up). */
  maxLateMs: number;
  timedOut: boolean;
  wallMs: number;
}

async function submitOne(api: Api, s: Submission, t0: number, opts: DriveOptions): Promise<SubmitRecord> {
  const sentAtMs = performance.now() - t0;
  const rec: SubmitRecord = {
    submission: s,
    sentAtMs,
    latencyMs: 0,
    attempts: 0,
    networkRetries: 0,
    inFlightRetries: 0,
    status: undefined,
    code: undefined,
    taskId: undefined,
    imagesTotal: undefined,
    creditsCharged: undefined,
    deduplicated: false,
  };
  for (;;) {
    rec.attempts++;
    try {
      const res = await api.request('POST', '/v1/tasks', s.body, { 'idempotency-key': s.idempotencyKey });
      rec.status = res.status;
      rec.code = errorCode(res.body);
      if (res.status === 409 && rec.code === 'idempotency_key_in_flight' && rec.inFlightRetries < 30) {
        rec.inFlightRetries++;
        await delay(1000 * Math.max(1, Number(res.headers.get('retry-after')) || 1));
        continue;
      }
      if (res.status === 200 || res.status === 202) {
        const b = res.body as {
          id: string;
          images_total: number;
          credits_charged: number;
          deduplicated?: boolean;
        };
        rec.taskId = b.id;
        rec.imagesTotal = b.images_total;
        rec.creditsCharged = b.credits_charged;
        rec.deduplicated = b.deduplicated === true;
      }
      break;
    } catch (error) {
      if (!(error instanceof NetworkError)) throw error;
      rec.status = undefined;
      rec.code = `network:${error.code}`;
      if (rec.networkRetries >= opts.retries) break;
      rec.networkRetries++;
      await delay(Math.min(5000, 200 * 2 ** (rec.networkRetries - 1)));
    }
  }
  rec.latencyMs = performance.now() - t0 - sentAtMs;
  return rec;
}

/** A counting semaphore: at most n holders. */
function semaphore(n: number) {
  let free = n;
  const waiting: (() => void)[] = [];
  return {
    async acquire(): Promise<void> {
      if (free > 0) {
        free--;
        return;
      }
      await new Promise<void>((resolve) => waiting.push(resolve));
    },
    release(): void {
      const next = waiting.shift();
      if (next) next();
      else free++;
    },
  };
}

/** Every task of `userId` the server lists, newest first, following pages until `enough` says stop. */
export async function listUserTasks(
  api: Api,
  userId: string,
  enough: (seen: TaskObject[]) => boolean = () => false,
): Promise<TaskObject[]> {
  const out: TaskObject[] = [];
  let cursor: string | null = null;
  for (;;) {
    const q = new URLSearchParams({ user_id: userId, limit: '200', ...(cursor ? { cursor } : {}) });
    const res = await api.request('GET', `/v1/tasks?${q}`);
    if (res.status !== 200)
      throw new Error(`GET /v1/tasks?user_id=${userId}: ${res.status} ${errorCode(res.body)}`);
    const page = res.body as { tasks: TaskObject[]; next_cursor: string | null };
    out.push(...page.tasks);
    cursor = page.next_cursor;
    if (!cursor || enough(out)) return out;
  }
}

export async function drive(
  api: Api,
  work: readonly Submission[],
  opts: DriveOptions,
  hooks: DriveHooks = {},
): Promise<DriveResult> {
  const startedAt = Date.now();
  const t0 = performance.now();
  const records: SubmitRecord[] = [];
  const tasks = new Map<string, TaskObject>();
  /** Accepted tasks not seen ended yet, by user. */
  const open = new Map<string, Set<string>>();
  let maxLateMs = 0;
  let submitting = true;

  const slots = semaphore(opts.concurrency);
  const inFlight: Promise<void>[] = [];
  const submitAll = (async () => {
    for (const s of work) {
      const wait = s.atMs - (performance.now() - t0);
      if (wait > 0) await delay(wait);
      await slots.acquire();
      maxLateMs = Math.max(maxLateMs, performance.now() - t0 - s.atMs);
      inFlight.push(
        submitOne(api, s, t0, opts)
          .then((rec) => {
            records.push(rec);
            if (rec.taskId && !tasks.has(rec.taskId)) {
              const set = open.get(s.userId) ?? new Set<string>();
              set.add(rec.taskId);
              open.set(s.userId, set);
            }
            hooks.onSubmitted?.(rec);
          })
          .finally(() => slots.release()),
      );
    }
    await Promise.all(inFlight);
    submitting = false;
  })();

  let lastSubmitAt = 0;
  let timedOut = false;
  let pauseMs = 250;
  for (;;) {
    const users = [...open.entries()].filter(([, ids]) => ids.size > 0);
    let changed = false;
    await mapLimit(users, 8, async ([userId, ids]) => {
      const seen = await listUserTasks(api, userId, (got) =>
        [...ids].every((id) => got.some((t) => t.id === id)),
      );
      for (const t of seen) {
        if (!ids.has(t.id)) continue;
        const before = tasks.get(t.id);
        if (!before || before.state !== t.state || before.progress.done !== t.progress.done) changed = true;
        tasks.set(t.id, t);
        if (isFinal(t.state)) ids.delete(t.id);
      }
    });
    const openCount = [...open.values()].reduce((a, s) => a + s.size, 0);
    hooks.onFollow?.({ ended: tasks.size - openCount, open: openCount });
    if (submitting) lastSubmitAt = performance.now();
    else if (openCount === 0) break;
    else if (performance.now() - lastSubmitAt > opts.timeoutMs) {
      timedOut = true;
      break;
    }
    pauseMs = changed ? 250 : Math.min(opts.pollMaxMs, pauseMs * 1.5);
    await Promise.race([delay(pauseMs), submitting ? submitAll : delay(pauseMs)]);
  }
  await submitAll;
  records.sort((a, b) => a.submission.index - b.submission.index);
  return { startedAt, records, tasks, maxLateMs, timedOut, wallMs: performance.now() - t0 };
}
