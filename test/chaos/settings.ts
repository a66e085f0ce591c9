/**
 * The two forms of the chaos run and the darkroom configuration they drive. Every duration the
 * auditor's bounds use comes from here, so the bounds follow the configuration, not guesses.
 */
export interface ChaosForm {
  name: 'full' | 'short';
  tasks: number;
  users: number;
  /** Submits are spread over this long; faults are scheduled inside it. */
  submitWindowMs: number;
  workers: number;
  schedulers: number;
  workerKills: number;
  leaderKills: number;
  leaderStops: number;
  pgRestarts: number;
  partitions: number;
  storms: number;
  serverErrorBursts: number;
  hangs: number;
  brokenBodies: number;
  adjustments: number;
  cancels: number;
}

export const FORMS: Record<'full' | 'short', ChaosForm> = {
  full: {
    name: 'full',
    tasks: 400,
    users: 40,
    submitWindowMs: 300_000,
    workers: 4,
    schedulers: 2,
    workerKills: 30,
    leaderKills: 2,
    leaderStops: 1,
    pgRestarts: 2,
    partitions: 2,
    storms: 4,
    serverErrorBursts: 6,
    hangs: 6,
    brokenBodies: 6,
    adjustments: 20,
    cancels: 12,
  },
  short: {
    name: 'short',
    tasks: 60,
    users: 10,
    submitWindowMs: 70_000,
    workers: 3,
    schedulers: 2,
    workerKills: 4,
    leaderKills: 1,
    leaderStops: 1,
    pgRestarts: 1,
    partitions: 1,
    storms: 1,
    serverErrorBursts: 2,
    hangs: 2,
    brokenBodies: 2,
    adjustments: 4,
    cancels: 3,
  },
};

/** darkroom's timing in the chaos run (ms). */
export const TIMING = {
  leaderLeaseMs: 3000,
  schedulerPollMs: 250,
  workerLeaseMs: 4000,
  heartbeatMs: 500,
  workerPollMs: 500,
  backoffBaseMs: 200,
  backoffMaxMs: 2000,
  providerTimeoutMs: 6000,
  defaultRetryAfterMs: 2000,
  /** Scripted 429s advertise this Retry-After (seconds). */
  retryAfterSeconds: 2,
  latencyMs: 300,
  jitterMs: 150,
} as const;

// Few images a task: the store step (decode, thumbnail) is what a loaded 2-core machine runs slowest.
export const PLANS = {
  free: { images: 1, credits: 3 },
  start: { images: 3, credits: 7 },
  pro: { images: 5, credits: 13 },
} as const;

export const INITIAL_GRANT = 60;

export const PROVIDERS = {
  main: {
    concurrency: 7,
    keys: [
      { id: 'm1', rpm: 150, concurrency: 3 },
      { id: 'm2', rpm: 150, concurrency: 3 },
      { id: 'm3', rpm: 150, concurrency: 3 },
    ],
  },
  edit: { concurrency: 2, keys: [{ id: 'e1', rpm: 40, concurrency: 2 }] },
} as const;

export type ProviderName = keyof typeof PROVIDERS;

/** The darkroom config file every process of the run reads (the database URL differs by role). */
export function darkroomConfig(opts: {
  home: string;
  port: number;
  databaseUrl: string;
  fakeUrl: string;
}): Record<string, unknown> {
  const provider = (name: ProviderName) => ({
    type: 'sim',
    baseUrl: opts.fakeUrl,
    concurrency: PROVIDERS[name].concurrency,
    keys: PROVIDERS[name].keys,
    timeoutMs: TIMING.providerTimeoutMs,
    defaultRetryAfterMs: TIMING.defaultRetryAfterMs,
    params: { size: '96x96' },
  });
  return {
    home: opts.home,
    server: { port: opts.port, host: '127.0.0.1', logLevel: 'warn' },
    database: { url: opts.databaseUrl, poolSize: 6 },
    auth: { enabled: false },
    alerts: { enabled: false },
    limits: {
      maxRunningTasks: 24,
      perUserRunningTasks: 2,
      perUserQueuedTasks: 12,
      userSubmitsPerMinute: 600,
    },
    credits: { initialGrant: INITIAL_GRANT },
    plans: PLANS,
    providers: { main: provider('main'), edit: provider('edit') },
    pipelines: {
      portrait: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 2 },
          { name: 'store', concurrency: 4 },
        ],
      },
      photography: {
        steps: [
          { name: 'beautify', provider: 'edit', calls: 1 },
          { name: 'generate', provider: 'main', batchSize: 3 },
          { name: 'store', concurrency: 4 },
        ],
      },
    },
    // AIMD halves a provider's concurrency per congestion event; recovering one step per 3
    // successes (not 10) lets a storm's after-effects pass within the run.
    scheduler: { pollMs: TIMING.schedulerPollMs, leaderLeaseMs: TIMING.leaderLeaseMs, aimdIncreaseAfter: 3 },
    worker: {
      concurrency: 4,
      leaseMs: TIMING.workerLeaseMs,
      heartbeatMs: TIMING.heartbeatMs,
      pollMs: TIMING.workerPollMs,
      maxAttempts: 4,
      backoffBaseMs: TIMING.backoffBaseMs,
      backoffMaxMs: TIMING.backoffMaxMs,
      shutdownGraceMs: 2000,
    },
  };
}
