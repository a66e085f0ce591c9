import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simulate } from '../../src/sim/engine.ts';
import { streams } from '../../src/sim/random.ts';
import { loadScenario } from '../../src/sim/scenario.ts';
import { plannerConfig } from '../../src/sim/settings.ts';
import { generateArrivals } from '../../src/sim/workload.ts';

/** Every shipped scenario with the config docs/planner.md runs it with. */
const SCENARIOS: Array<{ scenario: string; config: string; arrivals: number; run: boolean }> = [
  { scenario: '01-sixty-users.yaml', config: 'config-3keys.yaml', arrivals: 60, run: true },
  { scenario: '02-each-plan-alone.yaml', config: 'config-relay.yaml', arrivals: 3, run: true },
  { scenario: '02-ten-pro-at-once.yaml', config: 'config-relay.yaml', arrivals: 10, run: true },
  { scenario: '02-five-pro-per-minute.yaml', config: 'config-relay.yaml', arrivals: 266, run: false },
  { scenario: '02-twenty-users-mixed.yaml', config: 'config-relay.yaml', arrivals: 400, run: false },
  { scenario: '03-kiosks.yaml', config: 'config-kiosk.yaml', arrivals: 60, run: true },
  { scenario: '04-relay-throttles.yaml', config: 'config-relay.yaml', arrivals: 10, run: true },
  { scenario: 'free-behind-pro.yaml', config: 'config-relay.yaml', arrivals: 11, run: true },
];

describe('the shipped scenarios', () => {
  for (const s of SCENARIOS) {
    it(`${s.scenario} loads with ${s.config}${s.run ? ' and every task ends' : ''}`, () => {
      const scenario = loadScenario(`scenarios/${s.scenario}`);
      const config = plannerConfig(`scenarios/${s.config}`, scenario, {});
      assert.equal(generateArrivals(scenario, config, streams(scenario.seed).arrivals).length, s.arrivals);
      if (!s.run) return;
      const run = simulate(config, scenario);
      assert.ok(run.tasks.every((t) => t.state === 'succeeded'));
    });
  }

  it('document 02: each plan alone takes 18 s (Free), 26 s (Start), 36 s (Pro) at API concurrency 5', () => {
    const scenario = loadScenario('scenarios/02-each-plan-alone.yaml');
    const run = simulate(plannerConfig('scenarios/config-relay.yaml', scenario, {}), scenario);
    assert.deepEqual(
      run.tasks.map((t) => [t.plan, (t.finishedMs! - t.submittedMs) / 1000]),
      [
        ['free', 18],
        ['start', 26],
        ['pro', 36],
      ],
    );
  });
});
