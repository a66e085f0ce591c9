import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { ConfigError } from '../config/load.ts';
import { simulate } from '../sim/engine.ts';
import { summarize } from '../sim/metrics.ts';
import { renderHtml, renderSweepHtml } from '../sim/report-html.ts';
import { renderSweepText, renderText } from '../sim/report-text.ts';
import { loadScenario, ScenarioError } from '../sim/scenario.ts';
import { applySetting, plannerConfig } from '../sim/settings.ts';
import { meets, parseSetting, parseSweep, parseTargets, runSweep } from '../sim/sweep.ts';
import { loadOrExit, withCommonOptions, type CommonOptions } from './common.ts';

interface PlanOptions extends CommonOptions {
  scenario: string;
  sweep?: string;
  target?: string;
  json?: boolean;
  out?: string;
  seed?: number;
  set?: string[];
}

function parseSeed(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new ScenarioError(`--seed must be a non-negative integer, got "${value}"`);
  return n;
}

export function registerPlanCommand(program: Command): void {
  withCommonOptions(
    program
      .command('plan')
      .description(
        "capacity planner: simulate the configured system under a scenario with the scheduler's own policy on a virtual clock",
      ),
  )
    .requiredOption(
      '-s, --scenario <file>',
      'scenario YAML: arrivals, plan mix, latencies, error rates, overrides (see docs/planner.md)',
    )
    .option(
      '--sweep <name=range>',
      'run once per value and compare: keys=1..10, workers=1..20, maxRunningTasks=10..60:10, concurrency=1,2,4 …',
    )
    .option(
      '--target <metric=value>',
      'what "good enough" means, e.g. p95_wait=60s or p99_completion@pro=3m (comma list)',
    )
    .option('--json', 'machine-readable output')
    .option('--out <file>', 'also write a self-contained HTML report with charts')
    .option(
      '--set <name=value>',
      'change a setting before running (repeatable), same names as --sweep: --set concurrency=12 --set workers=2',
      (value: string, all: string[] | undefined) => [...(all ?? []), value],
    )
    .option('--seed <n>', 'override the scenario seed', parseSeed)
    .action((opts: PlanOptions) => {
      try {
        runPlan(opts);
      } catch (error) {
        if (error instanceof ScenarioError || error instanceof ConfigError) {
          process.stderr.write(`darkroom: ${error.message}\n`);
          process.exit(2);
        }
        throw error;
      }
    });
}

function runPlan(opts: PlanOptions): void {
  const file = opts.config ?? process.env.DARKROOM_CONFIG;
  // Validate the file on its own first, for the server's precise error messages.
  if (file) loadOrExit({ ...opts, config: file });
  let scenario = loadScenario(opts.scenario);
  if (opts.seed !== undefined) scenario = { ...scenario, seed: opts.seed };
  let config = plannerConfig(file, scenario);
  const settings: Record<string, number> = {};
  for (const text of opts.set ?? []) {
    const { name, value } = parseSetting(text);
    ({ config, scenario } = applySetting(config, scenario, name, value));
    settings[name] = value;
  }
  const targets = opts.target ? parseTargets(opts.target) : [];
  const started = performance.now();

  if (opts.sweep) {
    const result = runSweep(config, scenario, parseSweep(opts.sweep), targets, settings);
    const wallMs = performance.now() - started;
    if (opts.json) {
      const out = {
        sweep: result.name,
        targets: result.targets.map((t) => t.text),
        best: result.best ?? null,
        rows: result.rows.map((r) => ({ value: r.value, meets: r.meets ?? null, report: r.report })),
      };
      process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else process.stdout.write(`${renderSweepText(result, wallMs)}\n`);
    if (opts.out) writeReport(opts.out, renderSweepHtml(result), opts.json);
    if (targets.length && result.best === undefined) process.exitCode = 1;
    return;
  }

  const run = simulate(config, scenario);
  const report = summarize(run, config, scenario, settings);
  const wallMs = performance.now() - started;
  const met = targets.length ? meets(report, targets) : undefined;
  if (opts.json)
    process.stdout.write(
      `${JSON.stringify({ ...report, ...(met !== undefined ? { meets: met } : {}) }, null, 2)}\n`,
    );
  else {
    process.stdout.write(`${renderText(report, wallMs)}\n`);
    if (met !== undefined)
      process.stdout.write(`\ntarget ${targets.map((t) => t.text).join(', ')}: ${met ? 'met' : 'NOT met'}\n`);
  }
  if (opts.out) writeReport(opts.out, renderHtml(report, run), opts.json);
  if (met === false) process.exitCode = 1;
}

function writeReport(file: string, html: string, quiet: boolean | undefined): void {
  writeFileSync(file, html);
  if (!quiet) process.stdout.write(`report written to ${file}\n`);
}
