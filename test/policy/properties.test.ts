import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decide } from '../../src/policy/admission.ts';
import { simulate } from '../../src/sim/engine.ts';
import { arbitraryPlan } from './arbitrary.ts';
import { admissibleLeftovers, limitViolations, maxInAnyWindow } from './checks.ts';

/**
 * The policy's properties, checked at EVERY decision of randomised simulated runs: random
 * workloads, limits, key pools, latencies, errors, and providers that enforce less than
 * configured (429 → cool-down, AIMD decrease, requeue without spending an attempt).
 */
describe('decide() at every step of random simulated runs', () => {
  it('never exceeds a limit, leaves no admissible work behind, and decides the same twice', () => {
    let decisions = 0;
    let rateLimitedRuns = 0;
    let admittedTotal = 0;
    fc.assert(
      fc.property(arbitraryPlan(), ({ config, scenario }) => {
        const problems: string[] = [];
        const starts = new Map<string, number[]>();
        const run = simulate(config, scenario, {
          fullView: true,
          onDecision(input, decision) {
            decisions++;
            admittedTotal += decision.admissions.length;
            for (const v of limitViolations(input, decision)) problems.push(`t=${input.nowMs}: ${v}`);
            const left = admissibleLeftovers(input, decision);
            if (left.length > 0)
              problems.push(
                `t=${input.nowMs}: still admissible after the decision: ${left.map((j) => j.id).join(', ')}`,
              );
            assert.deepEqual(decide(structuredClone(input)), decision, 'same input, same decision');
          },
          onCallStart(call) {
            const id = `${call.provider}/${call.keyId}`;
            let list = starts.get(id);
            if (!list) starts.set(id, (list = []));
            list.push(call.atMs);
          },
        });
        for (const p of Object.values(config.providers)) {
          for (const k of p.keys) {
            const n = maxInAnyWindow(starts.get(`${p.name}/${k.id}`) ?? [], 60_000);
            if (n > k.rpm)
              problems.push(`key ${p.name}/${k.id}: ${n} requests started in one 60 s window > rpm ${k.rpm}`);
            if (k.disabled && (starts.get(`${p.name}/${k.id}`)?.length ?? 0) > 0)
              problems.push(`disabled key ${k.id} was used`);
          }
        }
        if (run.providers.some((p) => p.rateLimited > 0)) rateLimitedRuns++;
        assert.deepEqual(problems, []);
        // Nothing is lost: every task ends.
        assert.equal(run.tasks.filter((t) => t.state === 'unfinished').length, 0);
      }),
      { numRuns: 40, seed: 20240607 },
    );
    assert.ok(decisions > 1000, `enough steps checked (${decisions})`);
    assert.ok(admittedTotal > 1000, `enough admissions checked (${admittedTotal})`);
    assert.ok(rateLimitedRuns > 5, `providers pushed back with 429s in some runs (${rateLimitedRuns})`);
  });

  it('with honest providers (limits as configured) sends no request the provider rejects', () => {
    fc.assert(
      fc.property(arbitraryPlan({ misbehave: false }), ({ config, scenario }) => {
        const run = simulate(config, scenario);
        assert.equal(
          run.providers.reduce((n, p) => n + p.rateLimited, 0),
          0,
        );
        for (const p of run.providers)
          for (const k of p.keys)
            assert.ok(k.maxIn60s <= k.rpm, `${p.name}/${k.id}: ${k.maxIn60s} in 60 s > ${k.rpm}`);
      }),
      { numRuns: 25, seed: 7 },
    );
  });
});
