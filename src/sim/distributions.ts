import type { Rng } from './random.ts';

/** A latency distribution, in milliseconds. Draws are clamped at `minMs` (default 0). */
export type Latency =
  | { dist: 'fixed'; ms: number }
  | { dist: 'normal'; meanMs: number; sdMs: number; minMs?: number | undefined }
  | { dist: 'lognormal'; meanMs: number; sdMs: number }
  | { dist: 'uniform'; minMs: number; maxMs: number }
  | { dist: 'exponential'; meanMs: number };

export function sampleLatency(spec: Latency, rng: Rng): number {
  switch (spec.dist) {
    case 'fixed':
      return spec.ms;
    case 'normal':
      return Math.max(spec.minMs ?? 0, spec.meanMs + spec.sdMs * rng.normal());
    case 'lognormal': {
      if (spec.sdMs <= 0) return spec.meanMs;
      const sigma2 = Math.log(1 + (spec.sdMs / spec.meanMs) ** 2);
      const mu = Math.log(spec.meanMs) - sigma2 / 2;
      return Math.exp(mu + Math.sqrt(sigma2) * rng.normal());
    }
    case 'uniform':
      return spec.minMs + (spec.maxMs - spec.minMs) * rng.uniform();
    case 'exponential':
      return rng.exponential(spec.meanMs);
  }
}

/** The distribution's mean (before clamping), for closed-form estimates. */
export function meanLatency(spec: Latency): number {
  switch (spec.dist) {
    case 'fixed':
      return spec.ms;
    case 'uniform':
      return (spec.minMs + spec.maxMs) / 2;
    default:
      return spec.meanMs;
  }
}

export function describeLatency(spec: Latency): string {
  const s = (ms: number) => `${+(ms / 1000).toFixed(2)}s`;
  switch (spec.dist) {
    case 'fixed':
      return s(spec.ms);
    case 'normal':
      return `normal(${s(spec.meanMs)}, sd ${s(spec.sdMs)})`;
    case 'lognormal':
      return `lognormal(${s(spec.meanMs)}, sd ${s(spec.sdMs)})`;
    case 'uniform':
      return `uniform(${s(spec.minMs)}..${s(spec.maxMs)})`;
    case 'exponential':
      return `exponential(${s(spec.meanMs)})`;
  }
}
