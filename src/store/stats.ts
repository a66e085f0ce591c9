import type { Queryable } from './db.ts';

/** A step whose job durations are measured: its resource and step name. */
export interface StepRef {
  resource: string;
  stepName: string;
}

export interface StepDuration extends StepRef {
  /**
   * Mean of the last 100 successful jobs' time on their resource, ms: a provider call from its
   * start to its answer (the provider's slot frees there; the outcome's recording holds only the
   * worker slot), a store job from start to finish. Undefined with no history.
   */
  meanMs: number | undefined;
  /** Their standard deviation, ms; undefined with fewer than two. */
  sdMs: number | undefined;
  /** Mean admission → start delay of those jobs, ms. */
  dispatchMs: number | undefined;
  samples: number;
}

/**
 * Mean job durations per step, one round trip for all of them. Reads the newest 100 successful
 * jobs of each (resource, step) through the `jobs_recent_success` index (migration 0003).
 */
export async function meanStepDurations(q: Queryable, steps: StepRef[]): Promise<StepDuration[]> {
  if (steps.length === 0) return [];
  const { rows } = await q.query<{
    resource: string;
    step_name: string;
    ms: number | null;
    sd_ms: number | null;
    dispatch_ms: number | null;
    n: number;
  }>(
    `SELECT g.resource, g.step_name, m.ms, m.sd_ms, m.dispatch_ms, m.n
       FROM unnest($1::text[], $2::text[]) AS g(resource, step_name)
       CROSS JOIN LATERAL (
         SELECT avg(r.ms)::float8 AS ms, stddev_samp(r.ms)::float8 AS sd_ms, avg(r.dispatch_ms)::float8 AS dispatch_ms,
                count(*)::int AS n FROM (
           SELECT extract(epoch FROM COALESCE(provider_done_at, finished_at) - started_at) * 1000 AS ms,
                  extract(epoch FROM started_at - admitted_at) * 1000 AS dispatch_ms
             FROM jobs
            WHERE resource = g.resource AND state = 'succeeded' AND step_name = g.step_name AND started_at IS NOT NULL
            ORDER BY finished_at DESC LIMIT 100) r) m`,
    [steps.map((s) => s.resource), steps.map((s) => s.stepName)],
  );
  return rows.map((r) => ({
    resource: r.resource,
    stepName: r.step_name,
    meanMs: r.ms === null ? undefined : Number(r.ms),
    sdMs: r.sd_ms === null ? undefined : Number(r.sd_ms),
    dispatchMs: r.dispatch_ms === null ? undefined : Number(r.dispatch_ms),
    samples: r.n,
  }));
}

/** How long a provider's freed slot stays idle while calls wait: see {@link slotIdleMs}. */
export interface SlotIdle {
  resource: string;
  /** Median, ms; undefined with no sample. */
  medianMs: number | undefined;
  samples: number;
}

/**
 * Per provider, the median time from a call's answer (its slot frees: `provider_done_at`, else
 * its outcome) to the start of the next call on that provider that was already queued then: the
 * wake-up, the scheduler's pass, the claim and the inputs' load, during which the freed slot
 * does no work. Among the newest 100 successful calls of each provider (`jobs_recent_success`),
 * so the read is bounded whatever the table holds. The median leaves out the gaps where the
 * next call waited on something else (a user's or the key's RPM limit, a backoff). The planner
 * bench calibrates the planner's `dispatchMs` with the same quantity (bench/planner-vs-server.ts).
 */
export async function slotIdleMs(q: Queryable, resources: string[]): Promise<SlotIdle[]> {
  if (resources.length === 0) return [];
  const { rows } = await q.query<{ resource: string; ms: number | null; n: number }>(
    `SELECT g.resource, m.ms, m.n
       FROM unnest($1::text[]) AS g(resource)
       CROSS JOIN LATERAL (
         WITH recent AS (
           SELECT started_at, created_at, COALESCE(provider_done_at, finished_at) AS answered_at
             FROM jobs
            WHERE resource = g.resource AND state = 'succeeded' AND started_at IS NOT NULL
            ORDER BY finished_at DESC LIMIT 100)
         SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY gap.ms)::float8 AS ms, count(gap.ms)::int AS n
           FROM (SELECT extract(epoch FROM (SELECT min(n.started_at) FROM recent n
                         WHERE n.started_at >= c.answered_at AND n.created_at <= c.answered_at)
                         - c.answered_at) * 1000 AS ms
                   FROM recent c) gap
          WHERE gap.ms IS NOT NULL) m`,
    [resources],
  );
  return rows.map((r) => ({
    resource: r.resource,
    medianMs: r.ms === null ? undefined : Number(r.ms),
    samples: r.n,
  }));
}

/** What the ETA forecast reads: every active task, the work of running ones, keys, limits. */
export interface QueueSnapshot {
  /** The database's clock (epoch ms) when read. */
  nowMs: number;
  tasks: Array<{
    id: string;
    user_id: string;
    type: string;
    plan: string;
    weight: number;
    state: 'queued' | 'running';
    images_total: number;
    images_done: number;
    images_failed: number;
    cancel_requested: boolean;
    created_ms: number;
    started_ms: number | null;
    deadline_ms: number | null;
  }>;
  /** True when more than `maxTasks` tasks were queued: the newest are left out. */
  truncated: boolean;
  /** Queued, admitted and running jobs of the running tasks. */
  jobs: Array<{
    task_id: string;
    step_index: number;
    first_index: number;
    count: number;
    state: 'queued' | 'admitted' | 'running';
    key_id: string | null;
    attempts: number;
    ready_ms: number;
    admitted_ms: number | null;
    started_ms: number | null;
  }>;
  /** Per running task: when its last job ended (the users' last service, for aging). */
  lastJobEnd: Array<{ task_id: string; ms: number }>;
  keyRequests: Array<{ provider: string; key_id: string; t_ms: number }>;
  providerState: Array<{
    provider: string;
    key_id: string;
    effective_concurrency: number | null;
    cooldown_ms: number | null;
  }>;
  workerSlots: number;
}

const MS = (expr: string) => `(extract(epoch FROM ${expr}) * 1000)::float8`;

/**
 * The queue as the forecast needs it, in a few statements: the running tasks and the oldest
 * `maxTasks` queued ones (each on its index, tasks_active), the jobs of the running ones (queued tasks have exactly their first step's jobs),
 * the keys' request logs within the RPM window, AIMD and cool-downs, the live worker slots.
 */
export async function readQueueSnapshot(
  q: Queryable,
  opts: { maxTasks: number; windowMs: number; workerStaleMs: number },
): Promise<QueueSnapshot> {
  // Whole milliseconds: the forecast's instant is stored and compared as such.
  const now = await q.query<{ ms: number }>(`SELECT floor(${MS('clock_timestamp()')}) AS ms`);
  const columns = `id, user_id, type, plan, weight::float8 AS weight, state, images_total, images_done, images_failed,
            cancel_requested, ${MS('created_at')} AS created_ms, ${MS('started_at')} AS started_ms,
            ${MS('deadline_at')} AS deadline_ms`;
  const tasks = await q.query<QueueSnapshot['tasks'][number]>(
    `(SELECT ${columns} FROM tasks WHERE state = 'running' ORDER BY created_at, id)
     UNION ALL
     (SELECT ${columns} FROM tasks WHERE state = 'queued' AND NOT cancel_requested ORDER BY created_at, id LIMIT $1)`,
    [opts.maxTasks + 1],
  );
  const queuedRead = tasks.rows.reduce((n, t) => n + (t.state === 'queued' ? 1 : 0), 0);
  const truncated = queuedRead > opts.maxTasks;
  if (truncated) tasks.rows.length -= 1;
  const running = tasks.rows.filter((t) => t.state === 'running').map((t) => t.id);
  const jobs = running.length
    ? await q.query<QueueSnapshot['jobs'][number]>(
        `SELECT task_id, step_index, first_index, count, state, key_id, attempts,
                ${MS('run_after')} AS ready_ms, ${MS('admitted_at')} AS admitted_ms, ${MS('started_at')} AS started_ms
           FROM jobs WHERE task_id = ANY($1::text[]) AND state IN ('queued', 'admitted', 'running')`,
        [running],
      )
    : { rows: [] };
  const lastJobEnd = running.length
    ? await q.query<{ task_id: string; ms: number }>(
        `SELECT task_id, ${MS('max(finished_at)')} AS ms FROM jobs
          WHERE task_id = ANY($1::text[]) AND state IN ('succeeded', 'failed') GROUP BY task_id`,
        [running],
      )
    : { rows: [] };
  const keyRequests = await q.query<QueueSnapshot['keyRequests'][number]>(
    `SELECT provider, key_id, ${MS('COALESCE(started_at, admitted_at)')} AS t_ms FROM key_requests
      WHERE started_at IS NULL OR started_at > now() - $1::int * interval '1 millisecond'
      ORDER BY t_ms`,
    [opts.windowMs],
  );
  const providerState = await q.query<QueueSnapshot['providerState'][number]>(
    `SELECT provider, key_id, effective_concurrency::float8 AS effective_concurrency, ${MS('cooldown_until')} AS cooldown_ms
       FROM provider_state`,
  );
  const slots = await q.query<{ n: number }>(
    `SELECT COALESCE(sum(slots), 0)::int AS n FROM workers
      WHERE NOT stopping AND heartbeat_at > now() - $1::int * interval '1 millisecond'`,
    [opts.workerStaleMs],
  );
  return {
    nowMs: now.rows[0]!.ms,
    tasks: tasks.rows,
    truncated,
    jobs: jobs.rows,
    lastJobEnd: lastJobEnd.rows,
    keyRequests: keyRequests.rows,
    providerState: providerState.rows,
    workerSlots: slots.rows[0]?.n ?? 0,
  };
}
