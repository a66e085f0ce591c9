import type { Config, ResolvedPipeline, ResolvedStep } from '../config/load.ts';
import type { Latency } from './distributions.ts';
import type { Rng } from './random.ts';
import type { ErrorRates, Scenario } from './scenario.ts';
import type { Outcome } from './state.ts';

/** How long a step takes and whether it fails, per the scenario. */

const CALL_LATENCY_MS = 8000; // the source documents' batch latency, when a scenario names none
// The source documents' upload time per image, taken by a store job: its images are stored at once.
const STORE_LATENCY_MS = 2000;

/** The scenario's latency for a step: by `type.step`, step name, or kind; else a default. */
export function latencyOf(
  config: Config,
  scenario: Scenario,
  pipeline: ResolvedPipeline,
  step: ResolvedStep,
): Latency {
  const spec =
    scenario.latency[`${pipeline.name}.${step.name}`] ??
    scenario.latency[step.name] ??
    scenario.latency[step.kind];
  if (spec) return spec;
  if (step.kind === 'store') return { dist: 'fixed', ms: STORE_LATENCY_MS };
  const p = config.providers[step.provider!]!;
  if (p.type === 'sim') {
    return {
      dist: 'uniform',
      minMs: Math.max(0, p.sim.latencyMs - p.sim.jitterMs),
      maxMs: p.sim.latencyMs + p.sim.jitterMs,
    };
  }
  return { dist: 'fixed', ms: CALL_LATENCY_MS };
}

/** An attempt's outcome, drawn from the scenario's error rates (by step name, kind, or `*`). */
export function drawOutcome(scenario: Scenario, step: ResolvedStep, rng: Rng): Outcome {
  const rates: ErrorRates | undefined =
    scenario.errors[step.name] ?? scenario.errors[step.kind] ?? scenario.errors['*'];
  if (!rates) return { kind: 'success' };
  const u = rng.uniform();
  if (u < rates.permanent) return { kind: 'permanent' };
  if (u < rates.permanent + rates.transient) return { kind: 'transient' };
  if (u < rates.permanent + rates.transient + rates.timeout) return { kind: 'timeout' };
  return { kind: 'success' };
}
