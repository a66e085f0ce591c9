import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { batchesOf, retryStart, type JobHistory } from '../../src/policy/lifecycle.ts';
import { testConfig } from '../helpers/config.ts';

const config = testConfig({
  pipelines: {
    twostage: {
      steps: [
        { name: 'clean', provider: 'main', calls: 2 },
        { name: 'relight', provider: 'main', calls: 1 },
        { name: 'generate', provider: 'main', batchSize: 3 },
        { name: 'store', concurrency: 2 },
      ],
    },
  },
});
const pipeline = config.pipelines.twostage!;
const job = (step: number, first: number, state: string, keys: string[] = []): JobHistory => ({
  step_index: step,
  first_index: first,
  state,
  output: state === 'succeeded' ? { keys } : null,
});

describe('where an admin retry resumes, and its jobs', () => {
  it('cuts owed images into runs of consecutive indices, at most a batch each', () => {
    assert.deepEqual(batchesOf([], 3), []);
    assert.deepEqual(batchesOf([4], 3), [{ first: 4, count: 1 }]);
    assert.deepEqual(batchesOf([0, 1, 2, 3, 5, 6, 9], 3), [
      { first: 0, count: 3 },
      { first: 3, count: 1 },
      { first: 5, count: 2 },
      { first: 9, count: 1 },
    ]);
  });

  it('runs only the generate batches of images not delivered, from the transforms’ outputs', () => {
    const history = [
      job(0, 1, 'succeeded', ['c1']),
      job(0, 0, 'succeeded', ['c0']),
      job(1, 0, 'succeeded', ['r0']),
      job(2, 0, 'succeeded', ['g0', 'g1', 'g2']),
      job(2, 3, 'failed'),
      job(2, 6, 'succeeded', ['g6', 'g7']),
    ];
    const plan = retryStart(pipeline, 8, history, [0, 1, 2, 4, 6, 7], ['in'], 3);
    assert.equal(plan.step.name, 'generate');
    assert.deepEqual(plan.inputKeys, ['r0']);
    assert.deepEqual(
      plan.jobs.map((j) => [j.stepIndex, j.firstIndex, j.count]),
      [
        [2, 3, 1],
        [2, 5, 1],
      ],
    );
  });

  it('resumes at the first transform with a call that did not succeed, with that step’s inputs', () => {
    const history = [job(0, 0, 'succeeded', ['c0']), job(0, 1, 'succeeded', ['c1']), job(1, 0, 'failed')];
    const plan = retryStart(pipeline, 8, history, [], ['in'], 3);
    assert.equal(plan.step.name, 'relight');
    assert.deepEqual(plan.inputKeys, ['c0', 'c1']);
    assert.deepEqual(
      plan.jobs.map((j) => [j.stepIndex, j.firstIndex, j.count]),
      [[1, 0, 1]],
    );
    const first = retryStart(
      pipeline,
      8,
      [job(0, 1, 'succeeded', ['c1']), job(0, 0, 'canceled')],
      [],
      ['in'],
      3,
    );
    assert.equal(first.step.name, 'clean');
    assert.deepEqual(first.inputKeys, ['in']);
    assert.deepEqual(
      first.jobs.map((j) => j.firstIndex),
      [0],
    );
  });
});
