import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { simulate } from '../../src/sim/engine.ts';
import { summarize } from '../../src/sim/metrics.ts';
import { arbitraryPlan } from '../policy/arbitrary.ts';

describe('the simulator is deterministic per seed', () => {
  it('the same config, scenario and seed give the same run, event for event', () => {
    fc.assert(
      fc.property(arbitraryPlan(), ({ config, scenario }) => {
        const a = simulate(config, scenario);
        const b = simulate(config, scenario);
        assert.deepEqual(a, b);
        assert.deepEqual(summarize(a, config, scenario), summarize(b, config, scenario));
      }),
      { numRuns: 10, seed: 1 },
    );
  });

  it('another seed gives another run', () => {
    const [{ config, scenario }] = fc.sample(arbitraryPlan({ misbehave: false }), {
      seed: 99,
      numRuns: 1,
    }) as [ReturnType<typeof arbitraryPlan> extends fc.Arbitrary<infer T> ? T : never];
    const a = simulate(config, {
      ...scenario,
      seed: 1,
      latency: { generate: { dist: 'normal', meanMs: 3000, sdMs: 1000 } },
    });
    const b = simulate(config, {
      ...scenario,
      seed: 2,
      latency: { generate: { dist: 'normal', meanMs: 3000, sdMs: 1000 } },
    });
    assert.notDeepEqual(a.tasks, b.tasks);
  });
});
