import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { z } from 'zod';
import type { Latency } from './distributions.ts';

/**
 * A planner scenario: who submits what and when, how long each step takes, how often it fails,
 * what the providers really enforce, and overrides of the server's config. docs/planner.md
 * documents every field with examples; scenarios/ holds the source documents' scenarios.
 */

const seconds = z.number().nonnegative();
const positiveInt = z.number().int().positive();

const latencySchema = z.union([
  z
    .number()
    .nonnegative()
    .transform((ms): Latency => ({ dist: 'fixed', ms })),
  z
    .object({
      dist: z.literal('fixed'),
      ms: z.number().nonnegative().optional(),
      meanMs: z.number().nonnegative().optional(),
    })
    .strict()
    .refine((v) => v.ms !== undefined || v.meanMs !== undefined, { message: 'a fixed latency needs ms' })
    .transform((v): Latency => ({ dist: 'fixed', ms: v.ms ?? v.meanMs ?? 0 })),
  z
    .object({
      dist: z.literal('normal'),
      meanMs: z.number().nonnegative(),
      sdMs: z.number().nonnegative(),
      minMs: z.number().nonnegative().optional(),
    })
    .strict(),
  z
    .object({ dist: z.literal('lognormal'), meanMs: z.number().positive(), sdMs: z.number().nonnegative() })
    .strict(),
  z
    .object({ dist: z.literal('uniform'), minMs: z.number().nonnegative(), maxMs: z.number().nonnegative() })
    .strict()
    .refine((v) => v.maxMs >= v.minMs, { message: 'maxMs must be ≥ minMs' }),
  z.object({ dist: z.literal('exponential'), meanMs: z.number().positive() }).strict(),
]);

/** Plan name → share (any positive numbers; normalised). */
const mixSchema = z
  .record(z.string(), z.number().nonnegative())
  .refine((m) => Object.values(m).some((v) => v > 0), {
    message: 'a plan mix needs at least one positive share',
  });

const who = {
  /** One plan for every task of this arrival group. */
  plan: z.string().optional(),
  /** Or a mix of plans (overrides the scenario-wide `plans`). */
  plans: mixSchema.optional(),
  /** Task type (pipeline); default: the scenario's `type`. */
  type: z.string().optional(),
};

const burstSchema = z
  .object({
    users: positiveInt,
    atSeconds: seconds.default(0),
    /** Spread the submissions evenly over this many seconds (0: all at once). */
    spreadSeconds: seconds.default(0),
    tasksPerUser: positiveInt.default(1),
    ...who,
  })
  .strict();

const poissonSchema = z
  .object({
    perMinute: z.number().positive(),
    forSeconds: z.number().positive(),
    startSeconds: seconds.default(0),
    ...who,
  })
  .strict();

const periodicSchema = z
  .object({
    users: positiveInt,
    everySeconds: z.number().positive(),
    forSeconds: z.number().positive(),
    startSeconds: seconds.default(0),
    /** `spread`: user i starts at i·every/users; `together`: all users submit at the same instants. */
    phase: z.enum(['spread', 'together']).default('spread'),
    ...who,
  })
  .strict();

const arrivalSchema = z.union([
  z.object({ burst: burstSchema }).strict(),
  z.object({ poisson: poissonSchema }).strict(),
  z.object({ periodic: periodicSchema }).strict(),
]);

const errorRatesSchema = z
  .object({
    transient: z.number().min(0).max(1).default(0),
    timeout: z.number().min(0).max(1).default(0),
    permanent: z.number().min(0).max(1).default(0),
  })
  .strict()
  .refine((e) => e.transient + e.timeout + e.permanent <= 1, {
    message: 'error rates must sum to at most 1',
  });

const providerLimitSchema = z
  .object({
    /** Calls the provider (or a relay in front of it) really accepts at once, across all keys. */
    concurrency: positiveInt.optional(),
    /** Requests it really accepts per 60 s, across all keys. */
    rpm: positiveInt.optional(),
    /** Per key: what the provider really enforces (default: the key's configured rpm/concurrency). */
    keys: z
      .record(
        z.string(),
        z.object({ rpm: positiveInt.optional(), concurrency: positiveInt.optional() }).strict(),
      )
      .default({}),
    /** Retry-After sent with a concurrency 429 (default: the provider's defaultRetryAfterMs). */
    retryAfterMs: z.number().int().nonnegative().optional(),
  })
  .strict();

/** A scenario's settings when it names none (the forecast's scenario starts from them too). */
export const SCENARIO_DEFAULTS = {
  seed: 1,
  rateLimitLatencyMs: 200,
  workers: 1,
  dispatchMs: 0,
  recordMs: 0,
  maxSimulatedHours: 48,
} as const;

export const scenarioSchema = z
  .object({
    name: z.string().optional(),
    description: z.string().optional(),
    seed: z.number().int().nonnegative().default(SCENARIO_DEFAULTS.seed),
    /** Task type (pipeline name); default `photography` when configured, else the first pipeline. */
    type: z.string().optional(),
    /** Default plan mix for arrivals that name none. */
    plans: mixSchema.optional(),
    arrivals: z.array(arrivalSchema).min(1),
    /** Latency per step name (or per kind: transform / generate / store). */
    latency: z.record(z.string(), latencySchema).default({}),
    /** Error rates per step name (or kind, or `*`). */
    errors: z.record(z.string(), errorRatesSchema).default({}),
    /** What providers really enforce, beyond the configured limits: exceeding it gets a 429. */
    providerLimits: z.record(z.string(), providerLimitSchema).default({}),
    /** How long a 429 takes to come back. */
    rateLimitLatencyMs: z.number().int().nonnegative().default(SCENARIO_DEFAULTS.rateLimitLatencyMs),
    /** Worker processes; slots = workers × worker.concurrency. */
    workers: positiveInt.default(SCENARIO_DEFAULTS.workers),
    /** Delay from admission to the call starting (scheduler → worker claim). */
    dispatchMs: z.number().int().nonnegative().default(SCENARIO_DEFAULTS.dispatchMs),
    /**
     * From a call's answer to its recorded outcome (its images staged, the outcome's transaction):
     * the provider's slot is free from the answer, the job still counts for its user and its
     * worker slot until the outcome, and only then do the next jobs (its store job) exist.
     */
    recordMs: z.number().int().nonnegative().default(SCENARIO_DEFAULTS.recordMs),
    /** Overrides merged into the config file (same shape as darkroom.yaml). */
    config: z.record(z.string(), z.unknown()).default({}),
    /** Stop the run (tasks still open count as unfinished) after this much simulated time. */
    maxSimulatedHours: z.number().positive().default(SCENARIO_DEFAULTS.maxSimulatedHours),
  })
  .strict();

export type ScenarioInput = z.input<typeof scenarioSchema>;
export type Scenario = z.output<typeof scenarioSchema>;
export type ArrivalSpec = Scenario['arrivals'][number];
export type ErrorRates = z.output<typeof errorRatesSchema>;
export type ProviderLimit = z.output<typeof providerLimitSchema>;

export class ScenarioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScenarioError';
  }
}

export function parseScenario(raw: unknown, source = 'inline'): Scenario {
  const parsed = scenarioSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (i) => `${i.path.length ? i.path.map(String).join('.') : '(top level)'}: ${i.message}`,
    );
    throw new ScenarioError(`invalid scenario (${source}):\n  - ${lines.join('\n  - ')}`);
  }
  return parsed.data;
}

export function loadScenario(file: string): Scenario {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ScenarioError(`cannot read scenario ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (error) {
    throw new ScenarioError(
      `scenario ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
    );
  }
  return parseScenario(raw, file);
}
