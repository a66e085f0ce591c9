import type { z } from 'zod';
import type { configSchema } from './schema.ts';

type Parsed = z.output<typeof configSchema>;

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
        { name: 'store', concurrency: 5, cache: false, params: {} },
      ],
    },
    fitting: {
      inputs: ['person', 'garment'],
      steps: [
        { name: 'generate', provider: 'main', batchSize: 5, cache: false, params: {} },
        { name: 'store', concurrency: 5, cache: false, params: {} },
      ],
    },
  };
}
