import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import { ConfigError, resolveConfig, type Config, type ResolvedKey } from '../config/load.ts';
import { ScenarioError, type Scenario } from './scenario.ts';
import { defaultTaskType } from './workload.ts';

/**
 * The configuration a plan runs with: the config file, the scenario's `config:` overrides merged
 * over it, validated by the server's own schema; then any swept setting applied on top.
 */

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key; anything else (arrays included) in `over` replaces. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isRecord(base) || !isRecord(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = (file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text)) ?? {};
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid YAML/JSON: ${(error as Error).message}`);
  }
  if (!isRecord(raw)) throw new ConfigError(`config file ${file} must hold a mapping at the top level`);
  return raw;
}

export function plannerConfig(
  file: string | undefined,
  scenario: Scenario,
  env: NodeJS.ProcessEnv = process.env,
): Config {
  const raw = file ? readConfigFile(file) : {};
  const source = [
    file ?? 'built-in defaults',
    Object.keys(scenario.config).length ? '+ scenario overrides' : '',
  ]
    .filter(Boolean)
    .join(' ');
  return resolveConfig(deepMerge(raw, scenario.config) as Record<string, unknown>, env, source);
}

/** Names `--sweep` understands, besides a dotted path into the config (e.g. `providers.api.concurrency`). */
export const SETTINGS = [
  'keys',
  'workers',
  'maxRunningTasks',
  'perUserRunningTasks',
  'maxQueuedTasks',
  'concurrency',
  'rpm',
  'storeConcurrency',
] as const;

/** The provider of the scenario's generate step: what `keys`, `concurrency` and `rpm` change by default. */
export function mainProvider(config: Config, scenario: Scenario): string {
  const pipeline = config.pipelines[defaultTaskType(config, scenario)];
  const generate = pipeline?.steps.find((s) => s.kind === 'generate');
  return generate?.provider ?? Object.keys(config.providers)[0]!;
}

/**
 * Applies one swept setting. `keys:<provider>`, `concurrency:<provider>` and `rpm:<provider>`
 * pick a provider; without one they change the scenario's generate provider.
 */
export function applySetting(
  config: Config,
  scenario: Scenario,
  name: string,
  value: number,
): { config: Config; scenario: Scenario } {
  const c = structuredClone(config);
  const s = structuredClone(scenario);
  const [base, target] = name.split(':') as [string, string | undefined];
  const positive = (what: string) => {
    if (!Number.isInteger(value) || value < 1)
      throw new ScenarioError(`${what} must be a positive integer, got ${value}`);
  };
  const provider = () => {
    const n = target ?? mainProvider(c, s);
    const p = c.providers[n];
    if (!p)
      throw new ScenarioError(
        `--sweep ${name}: unknown provider "${n}" (configured: ${Object.keys(c.providers).join(', ')})`,
      );
    return p;
  };
  switch (base) {
    case 'workers':
      positive('workers');
      s.workers = value;
      break;
    case 'maxRunningTasks':
    case 'perUserRunningTasks':
    case 'maxQueuedTasks':
      positive(base);
      c.limits[base] = value;
      break;
    case 'keys': {
      positive('keys');
      const p = provider();
      p.keys = resizeKeys(p.keys, value);
      break;
    }
    case 'concurrency':
      positive('concurrency');
      provider().concurrency = value;
      break;
    case 'rpm':
      positive('rpm');
      for (const k of provider().keys) k.rpm = value;
      break;
    case 'storeConcurrency':
      positive('storeConcurrency');
      for (const p of Object.values(c.pipelines))
        for (const step of p.steps) if (step.kind === 'store') step.concurrency = value;
      break;
    default:
      setPath(c, name, value);
  }
  return { config: c, scenario: s };
}

/** The first n keys, extended with copies of the last one's limits. */
function resizeKeys(keys: ResolvedKey[], n: number): ResolvedKey[] {
  const out = keys.slice(0, n);
  const template = keys[keys.length - 1]!;
  const ids = new Set(out.map((k) => k.id));
  for (let i = out.length + 1; out.length < n; i++) {
    const id = `${template.id}-${i}`;
    if (ids.has(id)) continue;
    ids.add(id);
    out.push({ ...template, id, disabled: false });
  }
  return out;
}

function setPath(config: Config, path: string, value: number): void {
  const parts = path.split('.');
  let node: unknown = config;
  for (const part of parts.slice(0, -1)) {
    node = Array.isArray(node) ? node[Number(part)] : isRecord(node) ? node[part] : undefined;
    if (node === undefined) break;
  }
  const last = parts[parts.length - 1]!;
  const holder = node as Record<string, unknown> | unknown[] | undefined;
  const current = Array.isArray(holder) ? holder[Number(last)] : isRecord(holder) ? holder[last] : undefined;
  if (typeof current !== 'number') {
    throw new ScenarioError(
      `--sweep ${path}: not a numeric setting (use ${SETTINGS.join(', ')}, or a dotted path to a number in the config)`,
    );
  }
  if (Array.isArray(holder)) holder[Number(last)] = value;
  else (holder as Record<string, unknown>)[last] = value;
}
