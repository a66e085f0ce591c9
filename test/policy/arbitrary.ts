import fc from 'fast-check';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import { parseScenario, type Scenario } from '../../src/sim/scenario.ts';

/**
 * Random but valid (config, scenario) pairs for property tests: one or two providers with key
 * pools of random RPM and concurrency (some keys disabled), providers that secretly enforce less
 * than configured (→ 429s, cool-downs, AIMD), two task types, plans with weights and deadlines,
 * tight limits, bursts and Poisson arrivals, random latency distributions and error rates.
 * Small enough that a run takes milliseconds.
 */

const latency = fc.oneof(
  fc.record({ dist: fc.constant('fixed' as const), ms: fc.integer({ min: 200, max: 6000 }) }),
  fc.record({
    dist: fc.constant('normal' as const),
    meanMs: fc.integer({ min: 500, max: 6000 }),
    sdMs: fc.integer({ min: 0, max: 2000 }),
  }),
  fc.record({
    dist: fc.constant('lognormal' as const),
    meanMs: fc.integer({ min: 500, max: 6000 }),
    sdMs: fc.integer({ min: 0, max: 3000 }),
  }),
  fc.record({
    dist: fc.constant('uniform' as const),
    minMs: fc.integer({ min: 100, max: 2000 }),
    maxMs: fc.integer({ min: 2000, max: 6000 }),
  }),
);

const key = (i: number) =>
  fc.record({
    id: fc.constant(`k${i}`),
    rpm: fc.integer({ min: 1, max: 30 }),
    concurrency: fc.integer({ min: 1, max: 5 }),
    disabled: fc.boolean().map((b) => b && i > 0),
  });

const keys = fc
  .integer({ min: 1, max: 4 })
  .chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => key(i))));

const provider = fc.record({
  type: fc.constant('sim' as const),
  concurrency: fc.integer({ min: 1, max: 8 }),
  keys,
  defaultRetryAfterMs: fc.integer({ min: 500, max: 20_000 }),
  // A model that returns fewer images per request than a batch holds: jobs of several requests.
  maxImagesPerRequest: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
});

/** Drops an images-per-request limit under which a batch could never fit the provider's limits. */
function fitting<
  P extends {
    maxImagesPerRequest: number | undefined;
    concurrency: number;
    keys: Array<{ concurrency: number; rpm: number; disabled: boolean }>;
  },
>(p: P, batchSize: number): P {
  if (p.maxImagesPerRequest === undefined) return p;
  const requests = Math.ceil(batchSize / p.maxImagesPerRequest);
  const enabled = p.keys.filter((k) => !k.disabled);
  const fits =
    requests <= p.concurrency && enabled.some((k) => k.concurrency >= requests && k.rpm >= requests);
  return fits ? p : { ...p, maxImagesPerRequest: undefined };
}

const errorRates = fc.record({
  transient: fc.double({ min: 0, max: 0.2, noNaN: true }),
  timeout: fc.double({ min: 0, max: 0.05, noNaN: true }),
  permanent: fc.double({ min: 0, max: 0.05, noNaN: true }),
});

const hiddenLimit = fc.option(
  fc.record({
    concurrency: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
    rpm: fc.option(fc.integer({ min: 2, max: 40 }), { nil: undefined }),
    retryAfterMs: fc.option(fc.integer({ min: 0, max: 5000 }), { nil: undefined }),
  }),
  { nil: undefined },
);

const plan = fc.record({
  images: fc.integer({ min: 1, max: 12 }),
  credits: fc.integer({ min: 0, max: 12 }),
  weight: fc.integer({ min: 1, max: 5 }),
  deadlineSeconds: fc.option(fc.integer({ min: 5, max: 90 }), { nil: undefined }),
});

export interface Generated {
  config: Config;
  scenario: Scenario;
}

export interface GenerateOptions {
  /** Let providers enforce less than configured (429s) and inject errors. Default true. */
  misbehave?: boolean;
  /** Allow plan deadlines. Default true. */
  deadlines?: boolean;
}

export function arbitraryPlan(options: GenerateOptions = {}): fc.Arbitrary<Generated> {
  const misbehave = options.misbehave ?? true;
  const deadlines = options.deadlines ?? true;
  return fc
    .record({
      p0: provider,
      p1: provider,
      twoProviders: fc.boolean(),
      free: plan,
      pro: plan,
      batchSize: fc.integer({ min: 1, max: 5 }),
      storeConcurrency: fc.integer({ min: 1, max: 4 }),
      limits: fc.record({
        maxRunningTasks: fc.integer({ min: 1, max: 6 }),
        perUserRunningTasks: fc.integer({ min: 1, max: 3 }),
        maxQueuedTasks: fc.integer({ min: 3, max: 60 }),
      }),
      scheduler: fc.record({
        agingSeconds: fc.integer({ min: 5, max: 120 }),
        shortWorkPreference: fc.double({ min: 0, max: 1, noNaN: true }),
        aimdIncreaseAfter: fc.integer({ min: 1, max: 10 }),
        aimdDecreaseFactor: fc.double({ min: 0.3, max: 0.9, noNaN: true }),
        rpmWindowMarginMs: fc.integer({ min: 0, max: 2000 }),
      }),
      workerConcurrency: fc.integer({ min: 1, max: 10 }),
      workers: fc.integer({ min: 1, max: 2 }),
      burst: fc.integer({ min: 1, max: 8 }),
      perMinute: fc.integer({ min: 1, max: 8 }),
      forSeconds: fc.integer({ min: 20, max: 150 }),
      latency: fc.record({ transform: latency, generate: latency, store: latency }),
      errors: fc.record({ transform: errorRates, generate: errorRates, store: errorRates }),
      hidden0: hiddenLimit,
      hidden1: hiddenLimit,
      dispatchMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 500 })),
      recordMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 300 })),
      seed: fc.integer({ min: 0, max: 1_000_000 }),
    })
    .map((g): Generated => {
      const second = g.twoProviders ? 'p1' : 'p0';
      const withDeadline = (p: typeof g.free) => (deadlines ? p : { ...p, deadlineSeconds: undefined });
      const config = resolveConfig(
        {
          limits: g.limits,
          scheduler: g.scheduler,
          worker: {
            concurrency: g.workerConcurrency,
            maxAttempts: 3,
            backoffBaseMs: 500,
            backoffMaxMs: 5000,
          },
          plans: { free: withDeadline(g.free), pro: withDeadline(g.pro) },
          providers: {
            p0: stripUndefined(fitting(g.p0, g.batchSize)),
            ...(g.twoProviders ? { p1: stripUndefined(fitting(g.p1, g.batchSize)) } : {}),
          },
          pipelines: {
            photography: {
              steps: [
                { name: 'beautify', provider: 'p0', calls: 1 },
                { name: 'generate', provider: second, batchSize: g.batchSize },
                { name: 'store', concurrency: g.storeConcurrency },
              ],
            },
            fitting: {
              steps: [
                { name: 'generate', provider: second, batchSize: g.batchSize },
                { name: 'store', concurrency: g.storeConcurrency },
              ],
            },
          },
        },
        {},
        'generated',
      );
      const hidden: Record<string, unknown> = {};
      if (misbehave && g.hidden0) hidden.p0 = stripUndefined(g.hidden0);
      if (misbehave && g.hidden1 && g.twoProviders) hidden.p1 = stripUndefined(g.hidden1);
      const scenario = parseScenario({
        seed: g.seed,
        plans: { free: 1, pro: 1 },
        arrivals: [
          { burst: { users: g.burst, type: 'photography' } },
          { poisson: { perMinute: g.perMinute, forSeconds: g.forSeconds, type: 'fitting' } },
          {
            poisson: {
              perMinute: g.perMinute,
              forSeconds: g.forSeconds,
              startSeconds: 5,
              type: 'photography',
            },
          },
        ],
        latency: g.latency,
        errors: misbehave ? g.errors : {},
        providerLimits: hidden,
        workers: g.workers,
        dispatchMs: g.dispatchMs,
        recordMs: g.recordMs,
      });
      return { config, scenario };
    });
}

function stripUndefined(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
