import { resolveConfig, type Config } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';
import { parseScenario, type Scenario, type ScenarioInput } from '../../src/sim/scenario.ts';

export function config(input: ConfigInput): Config {
  return resolveConfig(input, {}, 'test');
}

export function scenario(input: ScenarioInput): Scenario {
  return parseScenario(input);
}

/** Document 01 in closed form: one call per task, keys of 15 RPM, 40 task slots, fixed latencies. */
export function sixtyUsers(keys: number, maxRunningTasks = 40): { config: Config; scenario: Scenario } {
  return {
    config: config({
      limits: { maxRunningTasks, perUserRunningTasks: 1 },
      plans: { portrait: { images: 1, credits: 1 } },
      providers: {
        gemini: {
          type: 'gemini',
          concurrency: 100,
          keys: Array.from({ length: keys }, (_, i) => ({ id: `key${i + 1}`, rpm: 15, concurrency: 40 })),
        },
      },
      pipelines: {
        photography: {
          steps: [
            { name: 'generate', provider: 'gemini', batchSize: 1 },
            { name: 'store', concurrency: 100 },
          ],
        },
      },
      worker: { concurrency: 200 },
    }),
    scenario: scenario({
      name: 'sixty',
      arrivals: [{ burst: { users: 60, plan: 'portrait' } }],
      latency: { generate: 8000, store: 2000 },
    }),
  };
}
