import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { z } from 'zod';
import type { Config } from '../config/load.ts';
import { AppError } from '../errors.ts';
import { streams } from '../sim/random.ts';
import { scenarioSchema, ScenarioError, type Scenario } from '../sim/scenario.ts';
import { applySetting } from '../sim/settings.ts';
import { parseSweep, parseTargets, type SweepSpec, type Target } from '../sim/sweep.ts';
import { generateArrivals } from '../sim/workload.ts';

/**
 * A capacity run of the dashboard: the planner (`darkroom plan --sweep`) against the server's
 * own configuration. This module turns a request into a job the planner thread can run, and
 * refuses, before any simulation, whatever the CLI would refuse (with the field named) and
 * whatever would run too long: more than MAX_VALUES sweep values, more than MAX_TASKS expected
 * submissions per value.
 */

export const MAX_VALUES = 12;
export const MAX_TASKS = 20_000;
const MAX_SET = 10;

/** Shipped scenarios: scenarios/*.yaml of the checkout, except the config-*.yaml files. */
export const SCENARIOS_DIR = fileURLToPath(new URL('../../scenarios/', import.meta.url));

export const capacityRunSchema = z
  .object({
    /** A shipped scenario's name (file name without .yaml), or a scenario body (docs/planner.md). */
    scenario: z.union([
      z
        .string()
        .regex(/^[\w.-]{1,100}$/, 'a shipped scenario name: letters, digits, . _ -')
        .describe('a shipped scenario, by name (GET /v1/admin/capacity/scenarios)'),
      z.record(z.string(), z.unknown()).describe('an inline scenario: the same fields as a scenario file'),
    ]),
    /** As `darkroom plan --sweep`: `keys=1..6`, `workers=1,2,4`, `concurrency=3..9:2`. */
    sweep: z.string().min(3).max(200),
    /** As `--target`: `p95_wait=30s`, `p99_completion@pro=3m` (comma list). */
    target: z.string().max(500).optional(),
    /** As `--set`: settings fixed for every run, e.g. `{ "workers": 2 }`. */
    set: z.record(z.string().min(1).max(100), z.number()).optional(),
    /** Overrides the scenario's seed. */
    seed: z
      .number()
      .int()
      .nonnegative()
      .max(2 ** 31)
      .optional(),
  })
  .strict();

export type CapacityRunRequest = z.output<typeof capacityRunSchema>;

/** What the planner thread runs: exactly the arguments of `runSweep`. */
export interface CapacityJob {
  config: Config;
  scenario: Scenario;
  sweep: SweepSpec;
  targets: Target[];
  fixed: Record<string, number>;
  /** For the run's view: the shipped scenario's name, or `inline`. */
  source: string;
}

function invalid(field: string, message: string): AppError {
  return new AppError('validation_failed', `${field}: ${message}`);
}

/** `--sweep "x": …` → the message without the CLI's option name. */
function plainMessage(error: unknown): string {
  return error instanceof Error ? error.message.replace(/^--\w+ /, '') : String(error);
}

export interface ShippedScenario {
  name: string;
  title: string;
  description: string;
}

let shipped: Promise<Map<string, { raw: unknown; info: ShippedScenario }>> | undefined;

async function readShipped(dir: string): Promise<Map<string, { raw: unknown; info: ShippedScenario }>> {
  const out = new Map<string, { raw: unknown; info: ShippedScenario }>();
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml') && !f.startsWith('config-')).sort();
  for (const file of files) {
    const name = file.slice(0, -'.yaml'.length);
    const raw: unknown = YAML.parse(await readFile(`${dir}/${file}`, 'utf8'));
    const parsed = scenarioSchema.safeParse(raw);
    if (!parsed.success) continue;
    out.set(name, {
      raw,
      info: {
        name,
        title: parsed.data.name ?? name,
        description: (parsed.data.description ?? '').trim(),
      },
    });
  }
  return out;
}

/** The shipped scenarios (read once per process). */
export async function shippedScenarios(
  dir = SCENARIOS_DIR,
): Promise<Map<string, { raw: unknown; info: ShippedScenario }>> {
  if (dir !== SCENARIOS_DIR) return readShipped(dir);
  shipped ??= readShipped(dir).catch((error: unknown) => {
    shipped = undefined;
    throw error;
  });
  return shipped;
}

/** The most submissions a scenario can make (Poisson groups: their expected count). */
export function expectedTasks(scenario: Scenario): number {
  let n = 0;
  for (const a of scenario.arrivals) {
    if ('burst' in a) n += a.burst.users * a.burst.tasksPerUser;
    else if ('poisson' in a) n += (a.poisson.perMinute * a.poisson.forSeconds) / 60;
    else n += a.periodic.users * Math.ceil(a.periodic.forSeconds / a.periodic.everySeconds);
  }
  return n;
}

function parseInlineScenario(raw: Record<string, unknown>): Scenario {
  const parsed = scenarioSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  throw new AppError(
    'validation_failed',
    parsed.error.issues
      .map((i) => `${['scenario', ...i.path.map(String)].join('.')}: ${i.message}`)
      .join('; '),
  );
}

/**
 * Validates a request against the live configuration and builds the job. Cheap work only
 * (no simulation): every check the planner would fail on, so a bad request is a 400 at once.
 */
export async function prepareJob(
  config: Config,
  body: CapacityRunRequest,
  dir = SCENARIOS_DIR,
): Promise<CapacityJob> {
  let scenario: Scenario;
  let source: string;
  if (typeof body.scenario === 'string') {
    const found = (await shippedScenarios(dir)).get(body.scenario);
    if (!found) {
      const names = [...(await shippedScenarios(dir)).keys()].join(', ');
      throw invalid('scenario', `no shipped scenario "${body.scenario}" (shipped: ${names})`);
    }
    scenario = scenarioSchema.parse(found.raw);
    source = body.scenario;
  } else {
    scenario = parseInlineScenario(body.scenario);
    source = 'inline';
  }
  if (Object.keys(scenario.config).length > 0) {
    throw invalid(
      'scenario.config',
      'a capacity run plans the live configuration; change settings with `set` (e.g. {"maxRunningTasks": 20}) instead',
    );
  }
  if (body.seed !== undefined) scenario = { ...scenario, seed: body.seed };
  const tasks = expectedTasks(scenario);
  if (tasks > MAX_TASKS) {
    throw invalid(
      'scenario.arrivals',
      `about ${Math.round(tasks)} submissions per run; a capacity run takes at most ${MAX_TASKS} (use darkroom plan for larger scenarios)`,
    );
  }

  let sweep: SweepSpec;
  try {
    sweep = parseSweep(body.sweep);
  } catch (error) {
    throw invalid('sweep', plainMessage(error));
  }
  if (sweep.values.length > MAX_VALUES)
    throw invalid('sweep', `${sweep.values.length} values; a capacity run takes at most ${MAX_VALUES}`);

  let targets: Target[] = [];
  try {
    if (body.target) targets = parseTargets(body.target);
  } catch (error) {
    throw invalid('target', plainMessage(error));
  }

  let live = config;
  const fixed: Record<string, number> = {};
  const entries = Object.entries(body.set ?? {});
  if (entries.length > MAX_SET) throw invalid('set', `at most ${MAX_SET} settings`);
  for (const [name, value] of entries) {
    try {
      ({ config: live, scenario } = applySetting(live, scenario, name, value));
    } catch (error) {
      throw invalid(`set.${name}`, plainMessage(error));
    }
    fixed[name] = value;
  }
  for (const value of sweep.values) {
    try {
      applySetting(live, scenario, sweep.name, value);
    } catch (error) {
      throw invalid('sweep', plainMessage(error));
    }
  }
  const problem = namesProblem(live, scenario);
  if (problem) throw invalid('scenario', problem);
  return { config: live, scenario, sweep, targets, fixed, source };
}

/** Unknown plans and task types: the planner's own check, on the submissions alone. */
function namesProblem(config: Config, scenario: Scenario): string | null {
  try {
    generateArrivals(scenario, config, streams(scenario.seed).arrivals);
    return null;
  } catch (error) {
    if (error instanceof ScenarioError) return error.message;
    throw error;
  }
}

/** Why a shipped scenario cannot run against this config (null: it can), for the page's list. */
export function shippedProblem(config: Config, raw: unknown): string | null {
  const scenario = scenarioSchema.parse(raw);
  if (Object.keys(scenario.config).length > 0) return 'it overrides the config (scenario.config)';
  if (expectedTasks(scenario) > MAX_TASKS) return `more than ${MAX_TASKS} submissions`;
  return namesProblem(config, scenario);
}
