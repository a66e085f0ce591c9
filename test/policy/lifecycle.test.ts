import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  afterCallSuccess,
  afterFailure,
  afterPartialSuccess,
  afterStore,
  callStepJobs,
  isSettled,
  storeStepJobs,
  taskEnd,
  withUnits,
  type TaskCounts,
} from '../../src/policy/lifecycle.ts';
import { testConfig } from '../helpers/config.ts';

const config = testConfig({
  pipelines: {
    photo: {
      steps: [
        { name: 'beautify', provider: 'main', calls: 2 },
        { name: 'generate', provider: 'main', batchSize: 5 },
        { name: 'store', concurrency: 2 },
      ],
    },
  },
});
const pipeline = config.pipelines.photo!;
const [beautify, generate, store] = pipeline.steps as [
  (typeof pipeline.steps)[0],
  (typeof pipeline.steps)[0],
  (typeof pipeline.steps)[0],
];
const fresh = (imagesTotal: number): TaskCounts => ({ imagesTotal, done: 0, failed: 0, canceled: false });
const retry = { backoffBaseMs: 1000, backoffMaxMs: 60_000, random: 0.5 };

describe('the task lifecycle (pure)', () => {
  it('fans a 12-image generate step into batches 0–4, 5–9, 10–11', () => {
    const jobs = callStepJobs(generate, 12, 3);
    assert.deepEqual(
      jobs.map((j) => [j.firstIndex, j.count]),
      [
        [0, 5],
        [5, 5],
        [10, 2],
      ],
    );
    assert.deepEqual(
      callStepJobs(beautify, 12, 3).map((j) => [j.firstIndex, j.count]),
      [
        [0, 1],
        [1, 1],
      ],
    );
  });

  it('starts the next call step only when a transform step’s last call succeeds', () => {
    const first = afterCallSuccess(pipeline, fresh(12), { stepIndex: 0, firstIndex: 0, count: 1 }, 1, 1, 3);
    assert.equal(first.next, undefined);
    const last = afterCallSuccess(pipeline, fresh(12), { stepIndex: 0, firstIndex: 1, count: 1 }, 1, 0, 3);
    assert.equal(last.next?.step.name, 'generate');
    assert.equal(last.next?.inputsFromStep, 0);
    assert.equal(last.next?.jobs.length, 3);
    const canceled = { ...fresh(12), canceled: true };
    assert.equal(
      afterCallSuccess(pipeline, canceled, { stepIndex: 0, firstIndex: 1, count: 1 }, 1, 0, 3).next,
      undefined,
    );
  });

  // A batch's images are stored by jobs of at most the store's concurrency (2 here), not one job
  // per image: a 3-image return is stored as [5, 6] and [7].
  it('stores the images a batch returned in jobs of at most the store concurrency, and fails the rest', () => {
    const out = afterCallSuccess(pipeline, fresh(12), { stepIndex: 1, firstIndex: 5, count: 5 }, 3, 0, 3);
    assert.equal(out.failedUnits, 2);
    assert.deepEqual(out.task, { imagesTotal: 12, done: 0, failed: 2, canceled: false });
    assert.equal(out.next?.step, store);
    assert.deepEqual(
      out.next?.jobs.map((j) => [j.firstIndex, j.count]),
      [
        [5, 2],
        [7, 1],
      ],
    );
    const partial = afterPartialSuccess(pipeline, fresh(12), { firstIndex: 5, count: 5 }, 2, 3);
    assert.deepEqual(partial.shrunk, { firstIndex: 7, count: 3 });
    assert.deepEqual(
      partial.next?.jobs.map((j) => [j.firstIndex, j.count]),
      [[5, 2]],
    );
  });

  it('cuts store jobs at the store concurrency, whatever the batch', () => {
    for (const concurrency of [1, 2, 3, 5, 8])
      for (const images of [1, 2, 5, 7]) {
        const jobs = storeStepJobs({ ...store, concurrency }, 10, images, 3);
        assert.ok(jobs.every((j) => j.count >= 1 && j.count <= concurrency));
        // Together they cover [10, 10 + images) once, in order.
        assert.deepEqual(
          jobs.flatMap((j) => Array.from({ length: j.count }, (_, i) => j.firstIndex + i)),
          Array.from({ length: images }, (_, i) => 10 + i),
        );
        assert.equal(jobs.length, Math.ceil(images / concurrency));
      }
  });

  it('counts a store attempt’s stored and rejected images; failures never exceed what is undelivered', () => {
    assert.deepEqual(afterStore(fresh(5), 2, 1), { imagesTotal: 5, done: 2, failed: 1, canceled: false });
    assert.deepEqual(afterStore({ ...fresh(5), done: 3, failed: 1 }, 1, 2), {
      imagesTotal: 5,
      done: 4,
      failed: 1,
      canceled: false,
    });
  });

  it('retries while attempts remain and the task is not settled, then fails the job’s images', () => {
    const job = { kind: 'generate' as const, firstIndex: 0, count: 5, attempts: 1, maxAttempts: 3 };
    const r = afterFailure(fresh(12), job, 'transient', retry);
    // Full jitter: 0.5 × min(60 s, 1 s × 2^0).
    assert.deepEqual(r, { action: 'retry', delayMs: 500, spendsAttempt: true });
    const spent = afterFailure(fresh(12), { ...job, attempts: 3 }, 'transient', retry);
    assert.equal(spent.action, 'fail');
    if (spent.action === 'fail')
      assert.deepEqual(spent.task, { imagesTotal: 12, done: 0, failed: 5, canceled: false });
    const canceled = afterFailure({ ...fresh(12), canceled: true }, job, 'transient', retry);
    assert.equal(canceled.action, 'fail');
    const transform = afterFailure(
      { ...fresh(12), done: 0 },
      { ...job, kind: 'transform', count: 1 },
      'permanent',
      retry,
    );
    assert.ok(transform.action === 'fail' && transform.failsTask && transform.task.failed === 12);
  });

  it('ends a task with no active job, refunding the undelivered share rounded down', () => {
    const task = { ...withUnits(fresh(3), 1, 2), open: true, creditsCharged: 10 };
    assert.equal(taskEnd(task, 1), undefined);
    assert.deepEqual(taskEnd(task, 0), { state: 'partial', failed: 2, refund: 6 });
    assert.equal(taskEnd({ ...task, open: false }, 0), undefined);
    assert.deepEqual(taskEnd({ ...fresh(3), canceled: true, open: true, creditsCharged: 3 }, 0), {
      state: 'canceled',
      failed: 3,
      refund: 3,
    });
    assert.ok(isSettled(task));
  });
});
