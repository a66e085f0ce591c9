import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applySetting } from '../../src/sim/settings.ts';
import { parseSweep, parseTargets, runSweep } from '../../src/sim/sweep.ts';
import { sixtyUsers } from './helpers.ts';

describe('sweeps', () => {
  it('parses ranges, steps and lists', () => {
    assert.deepEqual(parseSweep('keys=1..4'), { name: 'keys', values: [1, 2, 3, 4] });
    assert.deepEqual(parseSweep('maxRunningTasks=10..60:10').values, [10, 20, 30, 40, 50, 60]);
    assert.deepEqual(parseSweep('workers=8,1,2').values, [1, 2, 8]);
    assert.throws(() => parseSweep('keys'));
    assert.deepEqual(
      parseTargets('p95_wait=1m,p99_completion@pro=90s,tasks_per_min=10').map((t) => [
        t.metric,
        t.plan,
        t.value,
      ]),
      [
        ['p95_wait', undefined, 60],
        ['p99_completion', 'pro', 90],
        ['tasks_per_min', undefined, 10],
      ],
    );
    assert.throws(() => parseTargets('p96_wait=3s'));
  });

  it('finds the smallest key pool that starts 60 users within 15 s: 4 keys × 15 RPM', () => {
    const { config, scenario } = sixtyUsers(1);
    const result = runSweep(config, scenario, parseSweep('keys=1..6'), parseTargets('p95_wait=15s'));
    assert.equal(result.best, 4);
    assert.deepEqual(
      result.rows.map((r) => r.meets),
      [false, false, false, true, true, true],
    );
  });

  it('finds the task slots needed to start everyone at once: 60', () => {
    const { config, scenario } = sixtyUsers(4);
    const result = runSweep(
      config,
      scenario,
      parseSweep('maxRunningTasks=10..70:10'),
      parseTargets('max_wait=1s'),
    );
    assert.equal(result.best, 60);
  });

  it('applies settings without touching the originals', () => {
    const { config, scenario } = sixtyUsers(3);
    const applied = applySetting(config, scenario, 'keys', 5);
    assert.equal(applied.config.providers.gemini!.keys.length, 5);
    assert.equal(new Set(applied.config.providers.gemini!.keys.map((k) => k.id)).size, 5);
    assert.equal(config.providers.gemini!.keys.length, 3);
    assert.equal(applySetting(config, scenario, 'workers', 3).scenario.workers, 3);
    assert.equal(
      applySetting(config, scenario, 'providers.gemini.concurrency', 7).config.providers.gemini!.concurrency,
      7,
    );
    assert.throws(() => applySetting(config, scenario, 'providers.gemini.nothing', 7));
  });
});
