import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide } from '../../src/policy/admission.ts';
import { simulate } from '../../src/sim/engine.ts';
import { arbitraryPlan } from '../policy/arbitrary.ts';

/**
 * The simulator hands decide() a reduced view of the queue for speed. It must not change a
 * single decision: at every step of random runs, decide(reduced) === decide(full).
 */
describe('the planner’s reduced view of the queue', () => {
  it('gives decide() exactly the decision the full queue gives, at every step', () => {
    let steps = 0;
    fc.assert(
      fc.property(arbitraryPlan(), ({ config, scenario }) => {
        simulate(config, scenario, {
          fullView: true,
          onDecision(full, decision, sim) {
            steps++;
            const reduced = sim.policyInput(false);
            assert.ok(reduced.jobs.length <= full.jobs.length);
            assert.deepEqual(decide(reduced), decision, `t=${full.nowMs}`);
          },
        });
      }),
      { numRuns: 40, seed: 42 },
    );
    assert.ok(steps > 1000, `steps checked: ${steps}`);
  });
});
