import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import type { z } from 'zod';
import { checkCapabilityOverride } from '../providers/capabilities.ts';
import { checkBatchFits } from './batch-fit.ts';
import { checkOpenAIProvider } from '../providers/openai-models.ts';
import {
  DEFAULT_CALL_MS,
  DEFAULT_STORE_CONCURRENCY,
  DEFAULT_STORE_MS,
  defaultPipelines,
  defaultPlans,
  defaultProviders,
} from './defaults.ts';
import {
  configSchema,
  type ConfigInput,
  type KeyConfig,
  type ParsedConfig,
  type PipelineConfig,
  type PlanConfig,
  type ProviderConfig,
  type StepConfig,
} from './schema.ts';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type StepKind = 'transform' | 'generate' | 'store';

export interface ResolvedStep {
  index: number;
  name: string;
  kind: StepKind;
  /** Provider name; undefined for store steps. */
  provider: string | undefined;
  calls: number;
  batchSize: number;
  /** Store steps: the storage concurrency resource. */
  concurrency: number | undefined;
  maxAttempts: number;
  prompt: string | undefined;
  params: Record<string, unknown>;
  cache: boolean;
}

export interface ResolvedPipeline {
  name: string;
  inputs: string[];
  /** True when the pipeline declared its inputs: then each named role is required. */
  inputsRequired: boolean;
  steps: ResolvedStep[];
}

export interface ResolvedKey extends Omit<KeyConfig, 'secret'> {
  /** The secret value, never logged. */
  secret: string | undefined;
  /** True when a secret was configured but could not be resolved (missing env var). */
  secretMissing: boolean;
}

export interface ResolvedProvider extends Omit<ProviderConfig, 'keys'> {
  name: string;
  keys: ResolvedKey[];
}

export interface Config extends Omit<ParsedConfig, 'plans' | 'providers' | 'pipelines'> {
  plans: Record<string, PlanConfig>;
  providers: Record<string, ResolvedProvider>;
  pipelines: Record<string, ResolvedPipeline>;
  /** Where the configuration came from, for logs. */
  source: string;
  /** Doubtful but allowed settings, logged at start-up (e.g. a model id darkroom does not know). */
  warnings?: string[];
}

export interface LoadOptions {
  /** Path of a YAML or JSON file. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Overrides from the command line, applied last. */
  overrides?: { port?: number; home?: string; databaseUrl?: string };
}

/** Reads, merges env and flag overrides into, validates and resolves the configuration. */
export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const file = options.file ?? env.DARKROOM_CONFIG;
  let raw: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
    }
    try {
      raw = (file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text)) ?? {};
    } catch (error) {
      throw new ConfigError(
        `config file ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
      );
    }
    if (typeof raw !== 'object' || Array.isArray(raw))
      throw new ConfigError(`config file ${file} must hold a mapping at the top level`);
  }
  return resolveConfig(
    applyEnv(raw as Record<string, unknown>, env, options.overrides ?? {}),
    env,
    file ?? 'built-in defaults',
  );
}

function applyEnv(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  overrides: NonNullable<LoadOptions['overrides']>,
): Record<string, unknown> {
  const out: Record<string, Record<string, unknown> | unknown> = { ...raw };
  const section = (name: string): Record<string, unknown> => {
    const current = out[name];
    const copy =
      typeof current === 'object' && current !== null ? { ...(current as Record<string, unknown>) } : {};
    out[name] = copy;
    return copy;
  };
  const num = (name: string, value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n))
      throw new ConfigError(`environment variable ${name} must be a number, got "${value}"`);
    return n;
  };
  if (env.DARKROOM_HOME) out.home = env.DARKROOM_HOME;
  if (env.PORT) section('server').port = num('PORT', env.PORT);
  if (env.HOST) section('server').host = env.HOST;
  if (env.DARKROOM_PUBLIC_URL) section('server').publicUrl = env.DARKROOM_PUBLIC_URL;
  if (env.DARKROOM_LOG_LEVEL) section('server').logLevel = env.DARKROOM_LOG_LEVEL;
  if (env.DATABASE_URL) section('database').url = env.DATABASE_URL;
  if (env.DARKROOM_ADMIN_KEY) section('auth').adminKey = env.DARKROOM_ADMIN_KEY;
  if (env.DARKROOM_WORKER_CONCURRENCY) {
    section('worker').concurrency = num('DARKROOM_WORKER_CONCURRENCY', env.DARKROOM_WORKER_CONCURRENCY);
  }
  if (overrides.home !== undefined) out.home = overrides.home;
  if (overrides.port !== undefined) section('server').port = overrides.port;
  if (overrides.databaseUrl !== undefined) section('database').url = overrides.databaseUrl;
  return out;
}

/** Validates an in-memory configuration (what a file would hold) and resolves it. */
export function resolveConfig(
  input: ConfigInput | Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
  source = 'inline',
): Config {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) throw new ConfigError(formatIssues(parsed.error.issues, source));
  const c = parsed.data;
  const plans = c.plans ?? defaultPlans();
  const providerInputs = c.providers ?? defaultProviders();
  const pipelineInputs = c.pipelines ?? defaultPipelines();
  const problems: string[] = [];

  if (Object.keys(plans).length === 0) problems.push('plans: at least one plan is required');
  const providers: Record<string, ResolvedProvider> = {};
  for (const [name, p] of Object.entries(providerInputs)) {
    const seen = new Set<string>();
    p.keys.forEach((k, i) => {
      if (seen.has(k.id)) problems.push(`providers.${name}.keys[${i}].id: duplicate key id "${k.id}"`);
      seen.add(k.id);
    });
    if (p.type === 'comfyui' && !p.workflow)
      problems.push(`providers.${name}.workflow: a comfyui provider needs a workflow template file`);
    if (p.type === 'comfyui' && !p.baseUrl)
      problems.push(`providers.${name}.baseUrl: a comfyui provider needs the ComfyUI server's URL`);
    const overrideProblem = checkCapabilityOverride(p, `providers.${name}`);
    if (overrideProblem) problems.push(overrideProblem);
    providers[name] = { ...p, name, keys: p.keys.map((k) => resolveKey(k, env)) };
  }
  const pipelines: Record<string, ResolvedPipeline> = {};
  for (const [name, p] of Object.entries(pipelineInputs)) {
    pipelines[name] = resolvePipeline(name, p, providers, problems);
  }
  if (Object.keys(pipelines).length === 0)
    problems.push('pipelines: at least one pipeline (task type) is required');
  const warnings: string[] = [];
  for (const p of Object.values(providers)) {
    if (p.type !== 'openai') continue;
    const steps = Object.values(pipelines).flatMap((pipeline) =>
      pipeline.steps
        .filter((step) => step.provider === p.name)
        .map((step) => ({
          where: `pipelines.${pipeline.name}.steps[${step.index}].params`,
          params: step.params,
          batchSize: step.batchSize,
        })),
    );
    const check = checkOpenAIProvider(`providers.${p.name}`, p, steps);
    problems.push(...check.problems);
    warnings.push(...check.warnings);
  }
  if (problems.length > 0)
    throw new ConfigError(`invalid configuration (${source}):\n  - ${problems.join('\n  - ')}`);

  let storage = c.storage;
  if (storage.driver === 's3') {
    const accessKeyId = resolveSecretRef(storage.accessKeyId, env);
    const secretAccessKey = resolveSecretRef(storage.secretAccessKey, env);
    if (!accessKeyId)
      problems.push(`storage.accessKeyId: environment variable ${storage.accessKeyId.slice(4)} is not set`);
    if (!secretAccessKey)
      problems.push(
        `storage.secretAccessKey: environment variable ${storage.secretAccessKey.slice(4)} is not set`,
      );
    storage = { ...storage, accessKeyId: accessKeyId ?? '', secretAccessKey: secretAccessKey ?? '' };
  }
  let auth = c.auth;
  if (auth.tokenSecret !== undefined) {
    const tokenSecret = resolveSecretRef(auth.tokenSecret, env);
    if (!tokenSecret)
      problems.push(`auth.tokenSecret: environment variable ${auth.tokenSecret.slice(4)} is not set`);
    else if (tokenSecret.length < 32) problems.push('auth.tokenSecret: must hold at least 32 characters');
    auth = { ...auth, tokenSecret: tokenSecret ?? '' };
  }
  if (problems.length > 0)
    throw new ConfigError(`invalid configuration (${source}):\n  - ${problems.join('\n  - ')}`);

  return {
    ...c,
    auth,
    storage,
    home: path.resolve(c.home),
    plans,
    providers,
    pipelines,
    source,
    warnings,
  };
}

/**
 * Whether the scheduler may use a key: not disabled, and holding a secret — except for the
 * simulator and a local ComfyUI, which need none unless one was configured and is missing.
 */
/**
 * Settings derived from others, computed here once so the scheduler, the planner and the
 * telemetry cannot disagree on them.
 */

/** Uploads a store step runs at once (resolved for every store step; the fallback is for other steps). */
export function storeConcurrencyOf(step: Pick<ResolvedStep, 'concurrency'>): number {
  return step.concurrency ?? DEFAULT_STORE_CONCURRENCY;
}

/** The sliding window a key's RPM is counted over: a minute plus the configured margin. */
export function rpmWindowMs(config: Pick<Config, 'scheduler'>): number {
  return 60_000 + config.scheduler.rpmWindowMarginMs;
}

/** A worker counts as live (its slots admit work) while its heartbeat is this recent. */
export function workerStaleMs(config: Pick<Config, 'worker'>): number {
  return Math.max(config.worker.heartbeatMs * 3, 3000);
}

/** A step's duration before any has been measured: the sim provider's latency, else 8 s; stores 500 ms. */
export function defaultStepMs(config: Pick<Config, 'providers'>, step: ResolvedStep): number {
  if (step.kind === 'store') return DEFAULT_STORE_MS;
  const p = config.providers[step.provider ?? ''];
  return p?.type === 'sim' ? p.sim.latencyMs : DEFAULT_CALL_MS;
}

export function keyIsUsable(provider: Pick<ResolvedProvider, 'type'>, key: ResolvedKey): boolean {
  if (key.disabled || key.secretMissing) return false;
  return key.secret !== undefined || provider.type === 'sim' || provider.type === 'comfyui';
}

/** `env:NAME` reads the environment; anything else is the value itself. */
function resolveSecretRef(value: string, env: NodeJS.ProcessEnv): string | undefined {
  return value.startsWith('env:') ? env[value.slice(4)] || undefined : value;
}

function resolveKey(key: KeyConfig, env: NodeJS.ProcessEnv): ResolvedKey {
  const { secret, ...rest } = key;
  if (secret === undefined) return { ...rest, secret: undefined, secretMissing: false };
  if (secret.startsWith('env:')) {
    const value = env[secret.slice(4)];
    return { ...rest, secret: value || undefined, secretMissing: !value };
  }
  return { ...rest, secret, secretMissing: false };
}

function inferKind(step: StepConfig): 'transform' | 'generate' | 'store' {
  if (step.kind) return step.kind;
  if (!step.provider) return 'store';
  return step.batchSize !== undefined ? 'generate' : 'transform';
}

function resolvePipeline(
  name: string,
  p: PipelineConfig,
  providers: Record<string, ResolvedProvider>,
  problems: string[],
): ResolvedPipeline {
  const where = (i: number, field: string) => `pipelines.${name}.steps[${i}].${field}`;
  const steps = p.steps.map((s, index): ResolvedStep => {
    const kind = inferKind(s);
    if (kind !== 'store') {
      if (!s.provider) problems.push(`${where(index, 'provider')}: a ${kind} step needs a provider`);
      else if (!providers[s.provider]) {
        problems.push(
          `${where(index, 'provider')}: unknown provider "${s.provider}" (configured: ${Object.keys(providers).join(', ') || 'none'})`,
        );
      }
    } else if (s.provider) {
      problems.push(`${where(index, 'provider')}: a store step calls no provider`);
    }
    return {
      index,
      name: s.name,
      kind,
      provider: s.provider,
      calls: s.calls ?? 1,
      batchSize: s.batchSize ?? 1,
      concurrency: kind === 'store' ? (s.concurrency ?? DEFAULT_STORE_CONCURRENCY) : s.concurrency,
      maxAttempts: s.maxAttempts ?? 0, // 0: use worker.maxAttempts
      prompt: s.prompt,
      params: s.params,
      cache: s.cache,
    };
  });
  const generateAt = steps.findIndex((s) => s.kind === 'generate');
  const storeAt = steps.findIndex((s) => s.kind === 'store');
  if (generateAt < 0)
    problems.push(`pipelines.${name}.steps: one step must be a generate step (with batchSize)`);
  if (steps.filter((s) => s.kind === 'generate').length > 1)
    problems.push(`pipelines.${name}.steps: only one generate step is supported`);
  if (storeAt < 0)
    problems.push(
      `pipelines.${name}.steps: a store step (e.g. { name: store, concurrency: 5 }) must save the generated images`,
    );
  if (steps.filter((s) => s.kind === 'store').length > 1)
    problems.push(`pipelines.${name}.steps: only one store step is supported`);
  if (storeAt >= 0 && storeAt < generateAt)
    problems.push(`pipelines.${name}.steps: the store step must come after the generate step`);
  steps.forEach((s, i) => {
    if (s.kind !== 'store' && s.concurrency !== undefined) {
      problems.push(
        `${where(i, 'concurrency')}: only a store step takes a concurrency; limit provider calls with providers.${s.provider ?? '<name>'}.concurrency`,
      );
    }
  });
  if (steps.some((s, i) => s.kind === 'transform' && i > generateAt && generateAt >= 0)) {
    problems.push(`pipelines.${name}.steps: transform steps must come before the generate step`);
  }
  steps.forEach((s, i) => {
    const provider = s.provider ? providers[s.provider] : undefined;
    const problem = s.kind === 'generate' && provider ? checkBatchFits(provider, s.batchSize) : undefined;
    if (problem) problems.push(`${where(i, 'batchSize')}: ${problem}`);
  });
  steps.forEach((s, i) => {
    if (s.kind === 'store' && s.cache)
      problems.push(`${where(i, 'cache')}: only provider steps have results to cache`);
  });
  const names = new Set<string>();
  steps.forEach((s, i) => {
    if (names.has(s.name)) problems.push(`${where(i, 'name')}: duplicate step name "${s.name}"`);
    names.add(s.name);
  });
  return { name, inputs: p.inputs ?? ['input'], inputsRequired: p.inputs !== undefined, steps };
}

function formatIssues(issues: z.core.$ZodIssue[], source: string): string {
  const lines = issues.map((issue) => {
    const at = issue.path.length ? formatPath(issue.path) : '(top level)';
    return `${at}: ${issue.message}`;
  });
  return `invalid configuration (${source}):\n  - ${lines.join('\n  - ')}`;
}

function formatPath(p: PropertyKey[]): string {
  return p.reduce<string>(
    (acc, part) =>
      typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part),
    '',
  );
}

/** The configuration with every secret replaced, safe to print or return from the admin API. */
export function redactConfig(config: Config): unknown {
  return {
    ...config,
    database: {
      ...config.database,
      url: config.database.url ? config.database.url.replace(/\/\/[^@/]*@/, '//***@') : undefined,
    },
    providers: Object.fromEntries(
      Object.entries(config.providers).map(([n, p]) => [
        n,
        { ...p, keys: p.keys.map((k) => ({ ...k, secret: k.secret ? '***' : undefined })) },
      ]),
    ),
    storage: config.storage.driver === 's3' ? { ...config.storage, secretAccessKey: '***' } : config.storage,
    auth: {
      ...config.auth,
      adminKey: config.auth.adminKey ? '***' : undefined,
      tokenSecret: config.auth.tokenSecret ? '***' : undefined,
    },
  };
}
