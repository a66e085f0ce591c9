/**
 * The load test submits what the planner simulates: for a source document's scenario, the
 * tasks `darkroom loadtest` sends (user, plan, scenario time) are the tasks `darkroom plan`
 * ran, one for one, and --speed only divides the times.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildWorkload, creditsNeeded } from '../../src/cli/loadtest-workload.ts';
import { simulate } from '../../src/sim/engine.ts';
import { loadScenario } from '../../src/sim/scenario.ts';
import { plannerConfig } from '../../src/sim/settings.ts';

const CASES = [
  ['scenarios/02-twenty-users-mixed.yaml', 'scenarios/config-relay.yaml', 400],
  ['scenarios/02-five-pro-per-minute.yaml', 'scenarios/config-relay.yaml', undefined],
  ['scenarios/03-kiosks.yaml', 'scenarios/config-kiosk.yaml', 60],
] as const;

describe('loadtest workload', () => {
  for (const [file, configFile, count] of CASES) {
    it(`${file}: the planner's tasks, one for one`, () => {
      const scenario = loadScenario(file);
      const config = plannerConfig(configFile, scenario, {});
      const work = buildWorkload(config, scenario, { runId: 'r1', usersPrefix: 'p', speed: 1 });
      const planned = simulate(config, scenario).tasks;
      if (count !== undefined) assert.equal(work.length, count);
      assert.equal(work.length, planned.length);
      const key = (user: string, plan: string, at: number) => `${user} ${plan} ${at}`;
      assert.deepEqual(
        work.map((w) => key(w.userId, w.plan, w.scenarioAtMs)).sort(),
        planned.map((t) => key(`p-${t.userId}`, t.plan, t.submittedMs)).sort(),
      );
      assert.equal(new Set(work.map((w) => w.idempotencyKey)).size, work.length);
      assert.equal(new Set(work.map((w) => w.orderId)).size, work.length);
    });
  }

  it('--speed divides the arrival times; credits needed are the plans’ prices', () => {
    const scenario = loadScenario('scenarios/02-twenty-users-mixed.yaml');
    const config = plannerConfig('scenarios/config-relay.yaml', scenario, {});
    const work = buildWorkload(config, scenario, { runId: 'r1', usersPrefix: 'p', speed: 4 });
    for (const w of work) assert.equal(w.atMs, Math.round(w.scenarioAtMs / 4));
    // 20 users each submitting every 30 s for 600 s: 20 tasks each; 6 free (2), 8 start (30), 6 pro (70).
    const need = [...creditsNeeded(config, work).values()].sort((a, b) => a - b);
    assert.deepEqual(need, [...Array(6).fill(40), ...Array(8).fill(600), ...Array(6).fill(1400)]);
  });
});
