import { randomUUID } from 'node:crypto';
import { InvalidArgumentError, type Command } from 'commander';
import { ConfigError, type Config } from '../config/load.ts';
import { loadScenario, ScenarioError } from '../sim/scenario.ts';
import { plannerConfig } from '../sim/settings.ts';
import { audit } from './loadtest-audit.ts';
import { drive } from './loadtest-driver.ts';
import { Api, errorCode, mapLimit, NetworkError } from './loadtest-http.ts';
import { progressFor } from './loadtest-progress.ts';
import { buildReport, renderText } from './loadtest-report.ts';
import { buildWorkload, creditsNeeded, type Submission } from './loadtest-workload.ts';

/**
 * `darkroom loadtest`: drives a running server the way a planner scenario says, then reports
 * latencies and audits the outcome through the API (docs/loadtest.md). Exit 0 when every
 * check passed, 1 when one failed, 2 for a usage error or a server it cannot use.
 */

interface LoadtestOptions {
  url: string;
  key?: string;
  scenario: string;
  config?: string;
  speed: number;
  seed?: number;
  usersPrefix?: string;
  concurrency: number;
  retries: number;
  timeout: number;
  requestTimeout: number;
  pollMax: number;
  decodeSample: number;
  json?: boolean;
}

class UsageError extends Error {}

const positive = (what: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive number`);
  return n;
};
const positiveInt = (what: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${what} must be a whole number ≥ 0`);
  return n;
};

/** 429s the server documents as load shedding: reported as errors, not a failed check. */
const TOLERATED = ['429 queue_full', '429 user_queue_full', '429 rate_limited'];

export function registerLoadtestCommand(program: Command): void {
  program
    .command('loadtest')
    .description(
      'drive a running server the way a planner scenario says, report latencies and completion times, and audit the outcome through the API',
    )
    .requiredOption(
      '--url <url>',
      'the server, e.g. http://localhost:8080 (env DARKROOM_URL)',
      process.env.DARKROOM_URL,
    )
    .option(
      '--key <key>',
      'an app or admin key (env DARKROOM_KEY); an admin key also tops up credits and reads the ledger',
      process.env.DARKROOM_KEY,
    )
    .requiredOption('-s, --scenario <file>', 'scenario YAML, as for `darkroom plan` (docs/planner.md)')
    .option(
      '-c, --config <file>',
      "config with the scenario's plans and pipelines (the server's, as for `darkroom plan`; env DARKROOM_CONFIG)",
    )
    .option('--speed <x>', 'run the scenario x times faster: arrival times ÷ x', positive('--speed'), 1)
    .option('--seed <n>', "override the scenario's seed", positiveInt('--seed'))
    .option('--users-prefix <p>', 'user ids are <p>-<scenario user> (default lt-<run id>: fresh users)')
    .option('--concurrency <n>', 'submits in flight at most', positiveInt('--concurrency'), 32)
    .option(
      '--retries <n>',
      'retries of a submit after a network error (same Idempotency-Key)',
      positiveInt('--retries'),
      5,
    )
    .option(
      '--timeout <seconds>',
      'wait at most this long after the last submit for tasks to end',
      positive('--timeout'),
      1800,
    )
    .option('--request-timeout <seconds>', "one request's time limit", positive('--request-timeout'), 30)
    .option(
      '--poll-max <ms>',
      'longest pause between two rounds of following the tasks',
      positive('--poll-max'),
      3000,
    )
    .option(
      '--decode-sample <n>',
      'images decoded with sharp (every image is fetched)',
      positiveInt('--decode-sample'),
      20,
    )
    .option('--json', 'print one JSON report instead of the text')
    .exitOverride((err) => {
      // Usage errors exit 2, as `darkroom plan` documents for bad input; --help exits 0.
      process.exit(err.exitCode === 0 ? 0 : 2);
    })
    .action(async (opts: LoadtestOptions) => {
      try {
        process.exitCode = await runLoadtest(opts);
      } catch (error) {
        if (error instanceof ScenarioError || error instanceof ConfigError || error instanceof UsageError) {
          process.stderr.write(`darkroom: ${error.message}\n`);
          process.exitCode = 2;
          return;
        }
        throw error;
      }
    });
}

async function runLoadtest(opts: LoadtestOptions): Promise<number> {
  let scenario = loadScenario(opts.scenario);
  if (opts.seed !== undefined) scenario = { ...scenario, seed: opts.seed };
  const config = plannerConfig(opts.config ?? process.env.DARKROOM_CONFIG, scenario);
  const runId = randomUUID().slice(0, 8);
  const work = buildWorkload(config, scenario, {
    runId,
    usersPrefix: opts.usersPrefix ?? `lt-${runId}`,
    speed: opts.speed,
  });
  if (work.length === 0) throw new UsageError(`scenario ${opts.scenario} has no arrivals`);
  const api = new Api(opts.url, opts.key, {
    connections: opts.concurrency + 16,
    requestTimeoutMs: opts.requestTimeout * 1000,
  });
  try {
    const admin = await probe(api);
    const before = await setupUsers(api, config, work, admin, runId);
    const progress = progressFor(work.length);
    const run = await drive(
      api,
      work,
      {
        concurrency: opts.concurrency,
        retries: opts.retries,
        timeoutMs: opts.timeout * 1000,
        pollMaxMs: opts.pollMax,
      },
      { onSubmitted: (r) => progress.submitted(r), onFollow: (f) => progress.followed(f) },
    );
    progress.stop();
    const result = await audit(api, run, {
      decodeSample: opts.decodeSample,
      before,
      admin,
      tolerated: TOLERATED,
    });
    const report = buildReport(
      {
        name: scenario.name,
        file: opts.scenario,
        seed: scenario.seed,
        speed: opts.speed,
        url: api.baseUrl,
        runId,
      },
      run,
      result,
    );
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderText(report)}\n`);
    return report.audit.ok ? 0 : 1;
  } finally {
    await api.close();
  }
}

/** The server answers and takes the key; true when it is an admin key. */
async function probe(api: Api): Promise<boolean> {
  try {
    const ready = await api.request('GET', '/readyz');
    if (ready.status !== 200)
      throw new UsageError(`${api.baseUrl} is not ready: ${ready.status} ${errorCode(ready.body)}`);
    const stats = await api.request('GET', '/v1/admin/stats');
    if (stats.status === 401)
      throw new UsageError(`${api.baseUrl} refused the key (401): pass --key or DARKROOM_KEY`);
    return stats.status === 200;
  } catch (error) {
    if (error instanceof NetworkError)
      throw new UsageError(`cannot reach ${api.baseUrl}: ${error.code} ${error.message}`);
    throw error;
  }
}

/**
 * Creates each user through the API and reads its balance before the run. With an admin key a
 * user short of what its submits cost at the config's prices is topped up (a ledger `adjust`).
 */
async function setupUsers(
  api: Api,
  config: Config,
  work: readonly Submission[],
  admin: boolean,
  runId: string,
): Promise<Map<string, number>> {
  const need = creditsNeeded(config, work);
  const before = new Map<string, number>();
  await mapLimit([...need.entries()], 8, async ([userId, credits]) => {
    const user = encodeURIComponent(userId);
    const token = await api.request('POST', `/v1/users/${user}/tokens`, {});
    if (token.status !== 201)
      throw new UsageError(`creating user ${userId}: ${token.status} ${errorCode(token.body)}`);
    let balance = await balanceOf(api, userId);
    if (admin && balance < credits) {
      const res = await api.request('POST', `/v1/admin/users/${user}/credits`, {
        delta: credits - balance,
        reason: `darkroom loadtest ${runId}`,
      });
      if (res.status !== 200)
        throw new UsageError(`topping up ${userId}: ${res.status} ${errorCode(res.body)}`);
      balance = await balanceOf(api, userId);
    }
    before.set(userId, balance);
  });
  return before;
}

async function balanceOf(api: Api, userId: string): Promise<number> {
  const res = await api.request('GET', `/v1/users/${encodeURIComponent(userId)}/credits`);
  if (res.status !== 200) throw new UsageError(`credits of ${userId}: ${res.status} ${errorCode(res.body)}`);
  return (res.body as { balance: number }).balance;
}
