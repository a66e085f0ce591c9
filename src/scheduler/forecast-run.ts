import type { Config } from '../config/load.ts';
import { freshTaskCost, serviceKey } from '../pipeline/estimate.ts';
import { Forecast, forecast } from '../sim/forecast.ts';
import type { SummaryWrite, TaskForecastWrite } from '../store/forecasts.ts';
import { stateOf, type ForecastInput } from './forecast-input.ts';

/**
 * One forecast pass, pure (it runs in the forecast worker thread): the state read by the leader,
 * simulated forward with the real decide() (src/sim/forecast.ts), turned into the rows the API
 * reads and the summary a submit's estimate starts from.
 */
export interface ForecastOutput {
  nowMs: number;
  tasks: TaskForecastWrite;
  summary: SummaryWrite;
  /** Instants simulated over all runs (the pass's cost). */
  steps: number;
}

/** Runs this cheap (in instants) are repeated with two more seeds and averaged. */
const AVERAGE_MAX_STEPS = 3000;
const SAMPLES = 3;
const MAX_STEPS = 20_000;

export function runForecast(
  config: Config,
  input: ForecastInput,
  shouldStop?: () => boolean,
): ForecastOutput {
  const state = stateOf(config, input.snapshot);
  const { durations } = input;
  const runs = [forecast(config, state, durations, { seed: 1, maxSteps: MAX_STEPS, shouldStop })];
  // Whether to average depends only on the state (its first run's length), never on the clock.
  if (runs[0]!.complete && runs[0]!.steps <= AVERAGE_MAX_STEPS) {
    while (runs.length < SAMPLES)
      runs.push(forecast(config, state, durations, { seed: runs.length + 1, maxSteps: MAX_STEPS }));
  }
  const f = Forecast.average(runs);
  const nowMs = state.nowMs;
  const serviceMs: Record<string, number> = {};
  for (const type of Object.keys(config.pipelines))
    for (const [plan, p] of Object.entries(config.plans))
      serviceMs[serviceKey(type, plan)] = freshTaskCost(config, type, p.images, durations.stepMs).serviceMs;

  const tasks: TaskForecastWrite = { ids: [], positions: [], startMs: [], finishMs: [], simulated: [] };
  let queued = 0;
  let tailStartMs = nowMs;
  for (const t of state.tasks) {
    const r = f.get(t.id);
    if (!r) continue;
    let startMs = t.state === 'running' ? Number.NaN : (r.startAtMs ?? Number.NaN);
    if (t.state === 'queued') {
      queued++;
      // Past the simulated part the arithmetic gives a finish only: start one service time before.
      if (Number.isNaN(startMs))
        startMs = Math.max(nowMs, r.finishAtMs - (serviceMs[serviceKey(t.type, t.plan)] ?? 0));
      tailStartMs = Math.max(tailStartMs, startMs);
    }
    tasks.ids.push(t.id);
    tasks.positions.push(t.state === 'queued' ? f.position(t.id, nowMs) : 0);
    tasks.startMs.push(startMs);
    tasks.finishMs.push(r.finishAtMs);
    tasks.simulated.push(r.simulated);
  }
  return {
    nowMs,
    tasks,
    summary: {
      queued,
      tailStartMs,
      complete: f.complete && !input.snapshot.truncated,
      serviceMs,
      perTaskMs: queued > 0 ? Math.max(0, tailStartMs - nowMs) / queued : 0,
    },
    steps: f.steps,
  };
}
