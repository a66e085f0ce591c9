import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import fc from 'fast-check';
import { submitTask } from '../../src/pipeline/submit.ts';
import {
  cancelTask,
  recordCallSuccess,
  recordJobFailure,
  recordPartialSuccess,
  recordStoreOutcome,
  recordStoreSuccess,
} from '../../src/pipeline/transitions.ts';
import { cancelMissedDeadlines } from '../../src/scheduler/deadlines.ts';
import { reapExpiredLeases } from '../../src/scheduler/reaper.ts';
import type { SimJob, SimTask } from '../../src/sim/state.ts';
import { TaskBook } from '../../src/sim/tasks.ts';
import type { Db } from '../../src/store/db.ts';
import { claimJobs } from '../../src/store/attempts.ts';
import { storeJobIndices, type JobRow } from '../../src/store/jobs.ts';
import { markTasksRunning } from '../../src/store/tasks.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * The lifecycle twice: the server's (src/pipeline/transitions.ts, the reaper and the deadline loop,
 * on a real database) and the simulator's (src/sim/tasks.ts, what the planner and the forecast
 * run). Random scenarios drive both with the same scripted outcomes — a call returning all, some
 * or none of its images, a partial batch, a store job storing some of its images, rejecting some
 * (not images) and failing on the rest, each kind of failure, a lease that expires, a cancel, a
 * missed deadline — and after every step every task's state, stage, counters and refund and every
 * job's state, images and attempts must be equal. No worker or scheduler runs: the test admits
 * the job it picked and records its outcome itself.
 */

const config = testConfig({
  plans: {
    p3: { images: 3, credits: 7, weight: 1 },
    p5: { images: 5, credits: 11, weight: 1 },
  },
  pipelines: {
    photo: {
      steps: [
        { name: 'beautify', provider: 'main', calls: 2 },
        { name: 'generate', provider: 'main', batchSize: 2 },
        { name: 'store' },
      ],
    },
    // A batch of 3 is stored as two jobs (2 + 1): a store job holds at most the store's concurrency.
    gen: {
      steps: [
        { name: 'generate', provider: 'main', batchSize: 3, maxAttempts: 3 },
        { name: 'store', concurrency: 2 },
      ],
    },
  },
  worker: { maxAttempts: 2, maxRateLimitedRetries: 2, maxRateLimitedWaitMs: 3_600_000 },
});

type FailKind = 'transient' | 'timeout' | 'permanent' | 'rate_limited';
type Step =
  | { t: 'success'; pick: number; images: number }
  | { t: 'partial'; pick: number; images: number; kind: FailKind }
  | { t: 'store'; pick: number; images: number; kind: FailKind }
  | { t: 'fail'; pick: number; kind: FailKind }
  | { t: 'expire'; pick: number }
  | { t: 'cancel'; pick: number }
  | { t: 'deadline'; pick: number };

const failKind = fc.constantFrom<FailKind>('transient', 'timeout', 'permanent', 'rate_limited');
const pick = fc.nat(1000);
const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      t: fc.constant('success' as const),
      pick,
      images: fc.integer({ min: 0, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('partial' as const), pick, images: fc.nat(3), kind: failKind }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('fail' as const), pick, kind: failKind }) },
  // A store job (if one is queued) stores some of its images, rejects some, fails on the rest.
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('store' as const), pick, images: fc.nat(3), kind: failKind }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('expire' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancel' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('deadline' as const), pick }) },
);
const scenario = fc.record({
  tasks: fc.array(fc.record({ type: fc.constantFrom('photo', 'gen'), plan: fc.constantFrom('p3', 'p5') }), {
    minLength: 1,
    maxLength: 3,
  }),
  steps: fc.array(step, { minLength: 20, maxLength: 80 }),
});

interface Snapshot {
  tasks: Array<{
    state: string;
    stage: string;
    done: number;
    failed: number;
    canceled: boolean;
    refunded: number;
  }>;
  jobs: string[][];
}

async function serverSnapshot(db: Db, ids: string[]): Promise<Snapshot> {
  const tasks = [];
  const jobs = [];
  for (const id of ids) {
    const t = (
      await db.query<{
        state: string;
        stage: string;
        images_done: number;
        images_failed: number;
        cancel_requested: boolean;
        credits_refunded: number;
        ledger: number;
        stored: number;
      }>(
        `SELECT state, stage, images_done, images_failed, cancel_requested, credits_refunded,
                (SELECT coalesce(sum(delta), 0)::int FROM credit_ledger l WHERE l.task_id = t.id AND l.reason = 'refund') AS ledger,
                (SELECT count(*)::int FROM images i WHERE i.task_id = t.id) AS stored
           FROM tasks t WHERE id = $1`,
        [id],
      )
    ).rows[0]!;
    assert.equal(t.ledger, t.credits_refunded, 'the ledger holds the refund the task shows');
    assert.equal(t.stored, t.images_done, 'each delivered image counted once');
    tasks.push({
      state: t.state,
      stage: t.stage,
      done: t.images_done,
      failed: t.images_failed,
      canceled: t.cancel_requested,
      refunded: t.credits_refunded,
    });
    const rows = await db.query<JobRow>(
      'SELECT * FROM jobs WHERE task_id = $1 ORDER BY step_index, first_index',
      [id],
    );
    jobs.push(rows.rows.map((j) => `${j.step_index}.${j.first_index}+${j.count} ${j.state} a${j.attempts}`));
  }
  return { tasks, jobs };
}

function simSnapshot(tasks: SimTask[], jobs: Map<SimTask, SimJob[]>): Snapshot {
  return {
    tasks: tasks.map((t) => ({
      state: t.state,
      stage: t.stage,
      done: t.done,
      failed: t.failed,
      canceled: t.canceled,
      refunded: t.creditsRefunded,
    })),
    jobs: tasks.map((t) =>
      [...(jobs.get(t) ?? [])]
        .sort((a, b) => a.step.index - b.step.index || a.firstIndex - b.firstIndex)
        .map((j) => `${j.step.index}.${j.firstIndex}+${j.count} ${j.state} a${j.attempts}`),
    ),
  };
}

/** Both sides of one scenario, stepped together. */
class Replay {
  readonly ids: string[] = [];
  readonly simTasks: SimTask[] = [];
  readonly simJobs = new Map<SimTask, SimJob[]>();
  private readonly book = new TaskBook(config, { now: () => 0, wakeAt: () => {}, requestsOf: () => 1 });

  private readonly db: Db;

  constructor(db: Db) {
    this.db = db;
    this.book.onJob = (job) => {
      const list = this.simJobs.get(job.task) ?? [];
      list.push(job);
      this.simJobs.set(job.task, list);
    };
  }

  async submit(run: number, i: number, type: string, plan: string): Promise<void> {
    const r = await submitTask(this.db, config, {
      userId: `replay-${run}-${i}`,
      orderId: undefined,
      type,
      plan,
      prompt: '',
      inputs: [],
      params: {},
      deadlineSeconds: 3600,
      idempotencyKey: undefined,
      requestHash: 'x',
    });
    this.ids.push(r.body.id);
    this.simTasks.push(this.book.submit(`s${i}`, `replay-${run}-${i}`, plan, type));
  }

  /** The queued jobs, in one order on both sides (checked equal): the step picks among them. */
  async queued(): Promise<Array<{ serverId: string; sim: SimJob }>> {
    const server = await this.db.query<{
      id: string;
      task_id: string;
      step_index: number;
      first_index: number;
    }>(
      `SELECT id, task_id, step_index, first_index FROM jobs WHERE task_id = ANY($1::text[]) AND state = 'queued'`,
      [this.ids],
    );
    const key = (task: number, stepIndex: number, first: number) => `${task}:${stepIndex}:${first}`;
    const byKey = new Map(
      server.rows.map((r) => [key(this.ids.indexOf(r.task_id), r.step_index, r.first_index), r.id]),
    );
    const sim = this.simTasks.flatMap((t, i) =>
      [...t.queued].map((j) => ({ k: key(i, j.step.index, j.firstIndex), job: j })),
    );
    sim.sort((a, b) => (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
    assert.deepEqual(
      [...byKey.keys()].sort(),
      sim.map((s) => s.k),
      'the same jobs are queued',
    );
    return sim.map((s) => ({ serverId: byKey.get(s.k)!, sim: s.job }));
  }

  /** Admits and claims the job on the server; admits it in the simulator. */
  async start(serverId: string, job: SimJob): Promise<JobRow> {
    const taskId = this.ids[this.simTasks.indexOf(job.task)]!;
    await this.db.transaction(async (tx) => {
      await tx.query(
        `UPDATE jobs SET state = 'admitted', key_id = 'k1', admitted_at = now() WHERE id = $1 AND state = 'queued'`,
        [serverId],
      );
      await markTasksRunning(tx, [taskId]);
    });
    const claimed = await this.db.transaction((tx) => claimJobs(tx, 'replay', 1, 600_000));
    assert.equal(claimed.length, 1);
    assert.equal(claimed[0]!.id, serverId);
    this.book.admit(job, job.task.state === 'queued', 0);
    return claimed[0]!;
  }

  async apply(s: Step): Promise<void> {
    if (s.t === 'cancel' || s.t === 'deadline') {
      const i = s.pick % this.ids.length;
      const task = this.simTasks[i]!;
      if (s.t === 'cancel') {
        await this.db.transaction((tx) => cancelTask(tx, this.ids[i]!, 'canceled by the replay'));
        this.book.cancel(task);
      } else {
        await this.db.query(`UPDATE tasks SET deadline_at = now() - interval '1 second' WHERE id = $1`, [
          this.ids[i],
        ]);
        await cancelMissedDeadlines(this.db);
        this.book.deadline(task);
      }
      return;
    }
    const all = await this.queued();
    const queued = s.t === 'store' ? all.filter((q) => q.sim.kind === 'store') : all;
    if (queued.length === 0) return;
    const { serverId, sim } = queued[s.pick % queued.length]!;
    const row = await this.start(serverId, sim);
    const random = (s.pick % 97) / 97;
    const keys = (n: number) =>
      Array.from({ length: n }, (_, i) => `work/${row.task_id}/${row.first_index + i}.png`);
    if (s.t === 'expire') {
      await this.db.query(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [
        row.id,
      ]);
      await reapExpiredLeases(this.db, config, () => random);
      this.book.fail(sim, 'transient', random);
    } else if (s.t === 'success' && row.kind === 'store') {
      await this.db.transaction((tx) => recordStoreSuccess(tx, config, row, images(row)));
      this.book.succeed(sim);
    } else if ((s.t === 'partial' || s.t === 'store') && row.kind === 'store') {
      // Of the job's images: the first `stored` are stored, the next `rejected` are not images,
      // the rest failed as `kind` (owed: the job shrinks to them).
      const all = images(row);
      const stored = s.images % (all.length + 1);
      const rejected = s.pick % (all.length - stored + 1);
      const indices = storeJobIndices(row);
      const owed = indices.slice(stored + rejected).map((index, i) => ({
        index,
        key: row.input.keys![stored + rejected + i]!,
      }));
      const failure = { kind: s.kind, message: 'partial store', retryAfterMs: 1 };
      const results = {
        stored: all.slice(0, stored),
        rejected: indices
          .slice(stored, stored + rejected)
          .map((index) => ({ index, message: 'not an image' })),
        owed: owed.length > 0 ? { images: owed, failure } : undefined,
      };
      await this.db.transaction((tx) => recordStoreOutcome(tx, config, row, results, random));
      if (owed.length > 0) this.book.storePartial(sim, stored, rejected, s.kind, random);
      else this.book.succeed(sim, stored);
    } else if (s.t === 'success') {
      // A transform call returns its one output; a generate batch 0..count of its images.
      const n = row.kind === 'transform' ? 1 : Math.min(s.images, row.count);
      await this.db.transaction((tx) => recordCallSuccess(tx, config, row, keys(n)));
      this.book.succeed(sim, n);
    } else if (s.t === 'partial' && row.kind === 'generate' && row.count > 1) {
      const n = 1 + (s.images % (row.count - 1));
      const failure = { kind: s.kind, message: 'partial', retryAfterMs: 1 };
      await this.db.transaction((tx) => recordPartialSuccess(tx, config, row, keys(n), failure, random));
      this.book.partial(sim, n, s.kind, random);
    } else {
      const kind = s.t === 'fail' || s.t === 'partial' ? s.kind : 'transient';
      const failure = { kind, message: 'scripted', retryAfterMs: 1 };
      await this.db.transaction((tx) => recordJobFailure(tx, config, row, failure, random));
      this.book.fail(sim, kind, random);
    }
  }
}

/** The image rows of a store job's images, in its order. */
function images(row: JobRow) {
  return storeJobIndices(row).map((index) => ({
    task_id: row.task_id,
    index,
    storage_key: `tasks/${row.task_id}/${index}.png`,
    thumb_key: `tasks/${row.task_id}/${index}.thumb.webp`,
    mime: 'image/png',
    width: 1,
    height: 1,
    thumb_width: 1,
    thumb_height: 1,
    bytes: 1,
    sha256: '0'.repeat(64),
    cached: false,
  }));
}

describeEachDb('one lifecycle: server and simulator replay the same scenario', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  before(() => {
    db = t.db;
  });

  it('agree on every task and job state and every refund after each step', async () => {
    let run = 0;
    const ends = new Set<string>();
    await fc.assert(
      fc.asyncProperty(scenario, async ({ tasks, steps }) => {
        run++;
        const replay = new Replay(db);
        for (const [i, task] of tasks.entries()) await replay.submit(run, i, task.type, task.plan);
        const check = async (after: string) =>
          assert.deepEqual(
            simSnapshot(replay.simTasks, replay.simJobs),
            await serverSnapshot(db, replay.ids),
            `simulator (actual) vs server (expected) after ${after}`,
          );
        await check('submit');
        for (const [n, s] of steps.entries()) {
          await replay.apply(s);
          await check(`step ${n + 1}: ${JSON.stringify(s)}`);
        }
        for (const x of replay.simTasks) if (x.state !== 'queued' && x.state !== 'running') ends.add(x.state);
      }),
      {
        numRuns: 30,
        includeErrorInReport: true,
        seed: Number(process.env.LIFECYCLE_REPLAY_SEED ?? 20261124),
      },
    );
    // The scenarios reach the task ends, not only queued and running states.
    assert.ok(ends.size >= 3, `final states reached: ${[...ends].join(', ')}`);
  });
});
