import type { z } from 'zod';
import type { configSchema } from './schema.ts';

type Parsed = z.output<typeof configSchema>;

/** Uploads in flight at once for a store step that names no `concurrency`. */
export const DEFAULT_STORE_CONCURRENCY = 5;

/** A call step's duration before any has been measured: the source documents' measured batch latency. */
export const DEFAULT_CALL_MS = 8000;
/** A store step's duration before any has been measured. */
export const DEFAULT_STORE_MS = 500;

/** Plans of the source documents: Free 2 images, Start 30, Pro 70, a credit per image. */
export function defaultPlans(): NonNullable<Parsed['plans']> {
  return {
    free: { images: 2, credits: 2, weight: 1 },
    start: { images: 30, credits: 30, weight: 1 },
    pro: { images: 70, credits: 70, weight: 1 },
  };
}

/** One simulated provider, so the server runs end to end with no API key. */
export function defaultProviders(): NonNullable<Parsed['providers']> {
  return {
    main: {
      type: 'sim',
      concurrency: 20,
      keys: [{ id: 'k1', rpm: 360, concurrency: 5, disabled: false }],
      sim: { latencyMs: 3000, jitterMs: 500, errorRate: 0 },
      timeoutMs: 120_000,
      defaultRetryAfterMs: 10_000,
      params: {},
    },
  };
}

/** The two task types of the source documents. */
export function defaultPipelines(): NonNullable<Parsed['pipelines']> {
  return {
    photography: {
      steps: [
        { name: 'beautify', provider: 'main', calls: 1, cache: false, params: {} },
        { name: 'generate', provider: 'main', batchSize: 5, cache: false, params: {} },
        { name: 'store', concurrency: DEFAULT_STORE_CONCURRENCY, cache: false, params: {} },
      ],
    },
    fitting: {
      inputs: ['person', 'garment'],
      steps: [
        { name: 'generate', provider: 'main', batchSize: 5, cache: false, params: {} },
        { name: 'store', concurrency: DEFAULT_STORE_CONCURRENCY, cache: false, params: {} },
      ],
    },
  };
}
