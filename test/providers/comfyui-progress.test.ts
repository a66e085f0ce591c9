import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkflowProgress } from '../../src/providers/comfyui-progress.ts';

/** Feeds websocket events (type, data) and returns what would reach onProgress. */
function feed(nodes: string[], events: Array<[string, Record<string, unknown>]>): number[] {
  const progress = new WorkflowProgress(nodes);
  const reported: number[] = [];
  for (const [type, data] of events) {
    const grown = progress.apply(type, data);
    if (grown !== undefined) reported.push(grown);
  }
  return reported;
}

describe('comfyui workflow progress', () => {
  it('weighs every node the same and restarts no count when a second sampler starts', () => {
    const reported = feed(
      ['a', 'b', 'c', 'd'],
      [
        ['execution_cached', { nodes: ['a'] }],
        ['executing', { node: 'b' }],
        ['progress', { node: 'b', value: 1, max: 2 }],
        ['progress', { node: 'b', value: 2, max: 2 }],
        ['executing', { node: 'c' }],
        ['progress', { node: 'c', value: 1, max: 4 }],
        ['executing', { node: 'd' }],
        ['executed', { node: 'd' }],
      ],
    );
    assert.deepEqual(reported, [1 / 4, 1.5 / 4, 2 / 4, 2.25 / 4, 3 / 4, 1]);
  });

  it('gives progress without a node (old servers) to the node that is executing', () => {
    const reported = feed(
      ['a', 'b'],
      [
        ['executing', { node: 'a' }],
        ['progress', { value: 1, max: 2 }],
      ],
    );
    assert.deepEqual(reported, [0.25]);
  });

  it('never goes back, counts no node outside the workflow, and ends at 1', () => {
    const reported = feed(
      ['a', 'b'],
      [
        ['executing', { node: 'a' }],
        ['progress', { node: 'a', value: 3, max: 4 }],
        ['progress', { node: 'a', value: 1, max: 4 }], // a node that loops its own counter
        ['executing', { node: 'subgraph:7' }],
        ['progress', { node: 'subgraph:7', value: 5, max: 5 }],
        ['execution_success', {}],
      ],
    );
    assert.deepEqual(reported, [0.375, 0.5, 1]);
  });

  it('reads the per-node states of progress_state messages', () => {
    const reported = feed(
      ['a', 'b'],
      [
        ['progress_state', { nodes: { a: { state: 'finished', value: 1, max: 1 } } }],
        [
          'progress_state',
          { nodes: { a: { state: 'finished' }, b: { state: 'running', value: 1, max: 4 } } },
        ],
      ],
    );
    assert.deepEqual(reported, [0.5, 0.625]);
  });
});
