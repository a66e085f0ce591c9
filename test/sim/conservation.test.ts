import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { simulate } from '../../src/sim/engine.ts';
import { streams } from '../../src/sim/random.ts';
import { generateArrivals } from '../../src/sim/workload.ts';
import { arbitraryPlan } from '../policy/arbitrary.ts';

describe('conservation: nothing is lost, nothing is invented', () => {
  it('every submitted task is either rejected at the door or ends, with done + failed = its plan’s images', () => {
    fc.assert(
      fc.property(arbitraryPlan(), ({ config, scenario }) => {
        const run = simulate(config, scenario);
        const arrivals = generateArrivals(scenario, config, streams(scenario.seed).arrivals);
        assert.equal(run.tasks.length + run.rejected.length, arrivals.length);
        assert.equal(run.stoppedEarly, false);
        for (const t of run.tasks) {
          assert.notEqual(t.state, 'unfinished', `${t.id} never ended`);
          assert.equal(t.images, config.plans[t.plan]!.images);
          assert.equal(
            t.done + t.failed,
            t.images,
            `${t.id}: ${t.done} done + ${t.failed} failed ≠ ${t.images}`,
          );
          if (t.state === 'succeeded') assert.equal(t.done, t.images);
          if (t.state === 'failed') assert.equal(t.done, 0);
          if (t.state === 'canceled') {
            // Canceled at its deadline before any work started: no provider call spent.
            assert.equal(t.startedMs, undefined);
            assert.equal(t.done, 0);
          }
          assert.ok(t.finishedMs! >= (t.startedMs ?? t.submittedMs));
        }
        // Store jobs hold several images each (up to the store concurrency): count their images.
        const stored = run.stores.reduce((n, s) => n + s.images, 0);
        assert.ok(
          stored >= run.tasks.reduce((n, t) => n + t.done, 0),
          'every delivered image went through the store step',
        );
      }),
      { numRuns: 40, seed: 17 },
    );
  });
});
