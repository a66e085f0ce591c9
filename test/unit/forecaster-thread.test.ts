import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveConfig } from '../../src/config/load.ts';
import { runForecast } from '../../src/scheduler/forecast-run.ts';
import { createForecastThread } from '../../src/scheduler/forecaster-thread.ts';
import { durationsFor } from '../../src/sim/forecast.ts';
import type { QueueSnapshot } from '../../src/store/stats.ts';

/**
 * The forecast worker thread the scheduler warms as it starts (src/scheduler/forecaster-thread.ts):
 * `warm()` waits for the thread's modules, a run afterwards answers what the same pure forecast
 * answers on this thread, and closing a thread that is still loading does not leave anyone waiting.
 */
const config = resolveConfig({ home: '/tmp/darkroom-forecast-thread-test' }, {}, 'test');
const NOW = Date.UTC(2026, 0, 1);

const snapshot: QueueSnapshot = {
  nowMs: NOW,
  tasks: [
    {
      id: 't1',
      user_id: 'u1',
      type: 'photography',
      plan: 'free',
      weight: 1,
      state: 'queued',
      images_total: 2,
      images_done: 0,
      images_failed: 0,
      cancel_requested: false,
      created_ms: NOW - 100,
      started_ms: null,
      deadline_ms: null,
    },
  ],
  truncated: false,
  jobs: [],
  lastJobEnd: [],
  keyRequests: [],
  providerState: [],
  workerSlots: 4,
};

describe('forecast thread', () => {
  // A generous guard, not a timing assertion: a thread that never says it is ready fails instead of hanging.
  it('is ready after warm(), and then forecasts as the pure run does', { timeout: 120_000 }, async () => {
    const thread = createForecastThread(config);
    try {
      await thread.warm();
      await thread.warm(); // the same thread, already loaded
      const input = { snapshot, durations: durationsFor(config, {}, 0) };
      // A budget no run of one task reaches: the answer does not depend on the clock.
      const out = await thread.run(input, 60_000);
      assert.deepEqual(out.tasks.ids, ['t1']);
      assert.deepEqual(out.tasks.simulated, [true]);
      assert.ok(out.tasks.finishMs[0]! > NOW);
      assert.deepEqual(out, runForecast(config, input));
    } finally {
      await thread.close();
    }
  });

  it(
    'closed while still loading: warm() returns instead of waiting forever',
    { timeout: 120_000 },
    async () => {
      const thread = createForecastThread(config);
      const warming = thread.warm();
      await thread.close();
      await warming;
    },
  );
});
