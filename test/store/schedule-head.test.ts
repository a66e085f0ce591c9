import assert from 'node:assert/strict';
import { it } from 'node:test';
import fc from 'fast-check';
import { decide } from '../../src/policy/admission.ts';
import { planPass } from '../../src/scheduler/pass.ts';
import { buildPolicyInput, headLimits } from '../../src/scheduler/policy-input.ts';
import type { Queryable } from '../../src/store/db.ts';
import { readCapacity, readQueueHead, type QueueHead } from '../../src/store/schedule.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * The scheduler reads only the head of the queue one pass can use (readQueueHead). It must not
 * change a single decision: on random queues, decide() on the head gives exactly the decision
 * decide() gives on the whole queue (read here without any limit, as the scheduler read it
 * before). The queues mix running and queued tasks of several users and two pipelines that
 * start on different providers, creation-time ties broken by ids of mixed case, deadlines
 * (some missed), cancel requests, retries waiting on a backoff, jobs in flight, store jobs of
 * 1–3 images (each holding that many of the store's concurrency), keys cooling
 * down or near their RPM, and few or many free worker slots; and queued tasks an administrator
 * retried, whose jobs wait on a later step, on another provider than their pipeline starts on.
 */

const config = testConfig({
  providers: {
    main: {
      type: 'sim',
      concurrency: 4,
      keys: [
        { id: 'k1', rpm: 6, concurrency: 2 },
        { id: 'k2', rpm: 100, concurrency: 2 },
      ],
    },
    alt: { type: 'sim', concurrency: 3, keys: [{ id: 'a1', rpm: 100, concurrency: 3 }] },
  },
  pipelines: {
    photography: {
      steps: [
        { name: 'beautify', provider: 'main', calls: 1 },
        { name: 'generate', provider: 'main', batchSize: 2 },
        { name: 'store', concurrency: 2 },
      ],
    },
    fitting: {
      inputs: ['person', 'garment'],
      steps: [
        { name: 'generate', provider: 'alt', batchSize: 2 },
        { name: 'store', concurrency: 3 },
      ],
    },
    retouch: {
      steps: [
        { name: 'touchup', provider: 'alt', calls: 1 },
        { name: 'generate', provider: 'main', batchSize: 2 },
        { name: 'store', concurrency: 2 },
      ],
    },
  },
});
const WINDOW_MS = 61_000;
const STEPS = {
  photography: [
    { kind: 'transform', resource: 'main' },
    { kind: 'generate', resource: 'main' },
    { kind: 'store', resource: 'store:photography.store' },
  ],
  fitting: [
    { kind: 'generate', resource: 'alt' },
    { kind: 'store', resource: 'store:fitting.store' },
  ],
  retouch: [
    { kind: 'transform', resource: 'alt' },
    { kind: 'generate', resource: 'main' },
    { kind: 'store', resource: 'store:retouch.store' },
  ],
} as const;

const arbJob = fc.record({
  step: fc.nat({ max: 2 }),
  state: fc.constantFrom('queued', 'queued', 'queued', 'admitted', 'running', 'succeeded'),
  /** ms relative to now: mostly ready, some waiting on a backoff. */
  runAfter: fc.oneof(fc.integer({ min: -20_000, max: 0 }), fc.integer({ min: 1, max: 9000 })),
  key: fc.constantFrom('k1', 'k2', 'a1'),
  /** Store jobs: images (a batch's store job holds up to the store's concurrency, 2 or 3 here). */
  images: fc.integer({ min: 1, max: 3 }),
});
const arbTaskOf = (running: fc.Arbitrary<boolean>) =>
  fc.record({
    idPrefix: fc.constantFrom('a', 'B', 'b', 'Z', '_x', '-y'),
    type: fc.constantFrom('photography', 'fitting', 'retouch'),
    running,
    /** Queued again by an admin retry: its jobs are of the call step it resumes at. */
    retried: fc.integer({ min: 0, max: 3 }).map((n) => n === 0),
    createdMs: fc.oneof(
      fc.constantFrom(-60_000, -30_000, -30_000, -10_000, -10_000, -1000),
      fc.integer({ min: -120_000, max: 0 }),
    ),
    weight: fc.constantFrom(1, 3, 5),
    total: fc.integer({ min: 1, max: 12 }),
    cancel: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    deadlineMs: fc.option(fc.integer({ min: -5000, max: 20_000 }), { freq: 3 }),
    jobs: fc.array(arbJob, { minLength: 1, maxLength: 7 }),
  });
const arbTask = arbTaskOf(fc.boolean());
/** Users of a crowd: most of their tasks have not started. */
const arbCrowdTask = arbTaskOf(fc.integer({ min: 0, max: 5 }).map((n) => n === 0));
const arbQueue = fc.record({
  users: fc.oneof(
    fc.array(fc.array(arbTask, { maxLength: 6 }), { minLength: 1, maxLength: 5 }),
    // Many users with a task or two: most of them are not read.
    fc.array(fc.array(arbCrowdTask, { minLength: 1, maxLength: 2 }), { minLength: 6, maxLength: 40 }),
  ),
  /** Tasks the pass takes in fair-share order at first (undefined: the scheduler's own choice). */
  firstTake: fc.constantFrom(1, 2, 5, undefined),
  slots: fc.integer({ min: 0, max: 14 }),
  dispatchMs: fc.constantFrom(0, 0, 800, 4000),
  cooling: fc.constantFrom('', '', 'k1', 'k2', 'a1'),
  recentK1: fc.integer({ min: 0, max: 7 }),
  aimdMain: fc.constantFrom(4, 4, 2.5, 1),
});
type Queue = typeof arbQueue extends fc.Arbitrary<infer T> ? T : never;

/** The whole queue, as the scheduler read it before the bounded read. */
async function readWholeQueue(q: Queryable): Promise<QueueHead> {
  const jobs = await q.query<QueueHead['jobs'][number]>(
    `SELECT j.id, j.task_id, j.user_id, j.kind, j.resource, j.count, (extract(epoch FROM j.run_after) * 1000)::float8 AS ready_ms,
            (j.step_index * 100000 + j.first_index)::int AS "order"
       FROM jobs j JOIN tasks t ON t.id = j.task_id
      WHERE j.state = 'queued' AND (t.state = 'running' OR (t.state = 'queued' AND NOT t.cancel_requested))`,
  );
  const tasks = await q.query<QueueHead['tasks'][number]>(
    `SELECT id, user_id, weight::float8 AS weight, state, (extract(epoch FROM created_at) * 1000)::float8 AS created_ms,
            (images_total - images_done - images_failed)::int AS remaining,
            (extract(epoch FROM deadline_at) * 1000)::float8 AS deadline_ms
       FROM tasks WHERE state = 'running' OR (state = 'queued' AND NOT cancel_requested)`,
  );
  return { tasks: tasks.rows, jobs: jobs.rows };
}

/** Writes the random queue with times relative to the transaction's now(). */
async function writeQueue(tx: Queryable, queue: Queue): Promise<void> {
  const tasks: unknown[] = [];
  const jobs: unknown[] = [];
  queue.users.forEach((userTasks, u) =>
    userTasks.forEach((t, i) => {
      const id = `${t.idPrefix}${u}${i}`;
      tasks.push({
        id,
        user_id: `u${u}`,
        type: t.type,
        weight: t.weight,
        state: t.running ? 'running' : 'queued',
        attempt: !t.running && t.retried ? 2 : 1,
        total: t.total,
        done: t.running ? Math.floor(t.total / 3) : 0,
        cancel: t.cancel,
        created_ms: t.createdMs,
        deadline_ms: t.deadlineMs,
      });
      const steps = STEPS[t.type];
      // A retried task resumes at one call step (not the store): all its jobs are of that step.
      const resumeAt = Math.min(t.jobs[0]!.step, steps.length - 2);
      t.jobs.forEach((j, n) => {
        // A task that has not started has only queued jobs of its first step.
        const step = t.running ? Math.min(j.step, steps.length - 1) : t.retried ? resumeAt : 0;
        const state = t.running ? j.state : 'queued';
        const { kind, resource } = steps[step]!;
        const inFlight = state === 'admitted' || state === 'running';
        // A task that has not started (attempt 1) holds the jobs its submit wrote, ready at its
        // creation (run_after and created_at are both the submit's now()), never before it; some
        // here later (a fixture's second statement). Running and retried tasks' jobs wait on backoffs.
        const runAfterMs =
          t.running || t.retried ? j.runAfter : t.createdMs + (j.runAfter > 6000 ? j.runAfter - 6000 : 0);
        const key = kind === 'store' ? null : resource === 'alt' ? 'a1' : j.key === 'a1' ? 'k1' : j.key;
        jobs.push({
          id: `${id}-j${n}`,
          task_id: id,
          user_id: `u${u}`,
          step,
          kind,
          resource,
          first_index: n * 3,
          count: kind === 'store' ? j.images : 1,
          state,
          key_id: inFlight ? key : null,
          run_after_ms: runAfterMs,
        });
      });
    }),
  );
  await tx.query(
    `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, attempt, images_total, images_done,
                        credits_charged, cancel_requested, created_at, deadline_at)
     SELECT x.id, x.user_id, x.type, 'free', 1, x.weight, x.state, x.attempt, x.total, x.done, 0, x.cancel,
            now() + x.created_ms * interval '1 millisecond',
            now() + x.deadline_ms * interval '1 millisecond'
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, user_id text, type text, weight real, state text,
            attempt int, total int, done int, cancel boolean, created_ms int, deadline_ms int)`,
    [JSON.stringify(tasks)],
  );
  await tx.query(
    `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state, key_id,
                       max_attempts, run_after, requests)
     SELECT x.id, x.task_id, x.user_id, x.step, 's', x.kind, x.resource, x.first_index, x.count, x.state, x.key_id, 3,
            now() + x.run_after_ms * interval '1 millisecond', x.count
       FROM jsonb_to_recordset($1::jsonb) AS x(id text, task_id text, user_id text, step int, kind text,
            resource text, first_index int, count int, state text, key_id text, run_after_ms int)`,
    [JSON.stringify(jobs)],
  );
  await tx.query(`INSERT INTO workers (id, host, pid, roles, slots) VALUES ('w', 'h', 1, 'worker', $1)`, [
    queue.slots,
  ]);
  await tx.query(
    `INSERT INTO provider_state (provider, key_id, effective_concurrency) VALUES ('main', '', $1)`,
    [queue.aimdMain],
  );
  if (queue.cooling)
    await tx.query(
      `INSERT INTO provider_state (provider, key_id, cooldown_until) VALUES ($1, $2, now() + interval '5 seconds')`,
      [queue.cooling === 'a1' ? 'alt' : 'main', queue.cooling],
    );
  for (let i = 0; i < queue.recentK1; i++)
    await tx.query(
      `INSERT INTO key_requests (provider, key_id, job_id, admitted_at, started_at)
       VALUES ('main', 'k1', $1, now() - interval '10 seconds', now() - $2::int * interval '1 second')`,
      [`old${i}`, 5 + i * 7],
    );
}

class Rollback extends Error {}

describeEachDb('the scheduler’s bounded read of the queue', (kind) => {
  const t = useTestDb(kind);

  it('gives decide() exactly the decision the whole queue gives', async () => {
    const runs = kind === 'pglite' ? 150 : 80;
    let admissions = 0;
    let reduced = 0;
    let usersLeftOut = 0;
    let reread = 0;
    await fc.assert(
      fc.asyncProperty(arbQueue, async (queue) => {
        await t.db
          .transaction(async (tx) => {
            await writeQueue(tx, queue);
            // One transaction: now() is the same instant for every read.
            const capacity = await readCapacity(tx, { windowMs: WINDOW_MS, workerStaleMs: 60_000 });
            const pass = await planPass(tx, config, capacity, WINDOW_MS, queue.dispatchMs, queue.firstTake);
            const { head } = pass;
            const whole = await readWholeQueue(tx);
            const fromWhole = decide(
              buildPolicyInput(config, { ...capacity, ...whole }, WINDOW_MS, queue.dispatchMs),
            );
            assert.ok(head.jobs.length <= whole.jobs.length);
            assert.deepEqual(pass.decision, fromWhole);
            // The head read of every user (the read before the fair-share order) decides the same.
            const everyUser = await readQueueHead(
              tx,
              headLimits(config, capacity, WINDOW_MS, queue.dispatchMs),
            );
            assert.deepEqual(
              decide(buildPolicyInput(config, { ...capacity, ...everyUser }, WINDOW_MS, queue.dispatchMs)),
              fromWhole,
            );
            admissions += fromWhole.admissions.length;
            if (head.jobs.length < whole.jobs.length) reduced++;
            const usersWithWork = new Set(whole.jobs.map((j) => j.user_id)).size;
            if (new Set(head.jobs.map((j) => j.user_id)).size < usersWithWork) usersLeftOut++;
            if (pass.rounds > 1) reread++;
            throw new Rollback();
          })
          .catch((error: unknown) => {
            if (!(error instanceof Rollback)) throw error;
          });
      }),
      { numRuns: runs, seed: 808, endOnFailure: true },
    );
    // The property is only worth something if the runs admit work and actually cut the queue.
    assert.ok(admissions > runs / 2, `admissions: ${admissions}`);
    assert.ok(reduced > runs / 8, `runs where the head was smaller than the queue: ${reduced}`);
    // … and if users are left unread, and a first read too small for the decision happens.
    assert.ok(usersLeftOut > runs / 8, `runs where users with ready work were not read: ${usersLeftOut}`);
    assert.ok(reread > runs / 16, `runs that read the queue again: ${reread}`);
  });
});
