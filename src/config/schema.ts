import { z } from 'zod';

/**
 * The configuration file's schema. Every field has a default, so an empty file (or none)
 * gives a working server: embedded PGlite, local storage, the simulated provider.
 * docs/config.md documents each field; keep the two in step.
 */

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

const keySchema = z
  .object({
    id: z.string().min(1),
    /** Requests started per sliding 60 s window. */
    rpm: positiveInt.default(60),
    /** Requests in flight at once on this key. */
    concurrency: positiveInt.default(5),
    /** `env:NAME` reads the environment at start-up; a literal string is used as-is. */
    secret: z.string().min(1).optional(),
    disabled: z.boolean().default(false),
  })
  .strict();

const simSchema = z
  .object({
    latencyMs: nonNegativeInt.default(3000),
    jitterMs: nonNegativeInt.default(500),
    errorRate: z.number().min(0).max(1).default(0),
  })
  .strict();

/** One parameter a submit may set for a provider (`providers.<name>.taskParams`), with its bounds. */
const taskParamSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('integer'), min: z.number().int(), max: z.number().int() }).strict(),
  z.object({ type: z.literal('number'), min: z.number(), max: z.number() }).strict(),
  z.object({ type: z.literal('string'), maxLength: positiveInt }).strict(),
  z.object({ type: z.literal('oneOf'), values: z.array(z.union([z.string(), z.number()])).min(1) }).strict(),
  z.object({ type: z.literal('boolean') }).strict(),
]);

const providerSchema = z
  .object({
    type: z.enum(['sim', 'gemini', 'openai', 'comfyui']),
    /** Calls in flight across all keys of this provider (the AIMD cap). */
    concurrency: positiveInt.default(20),
    keys: z.array(keySchema).min(1),
    /** Simulated latency and errors (type sim only). */
    sim: simSchema.default({ latencyMs: 3000, jitterMs: 500, errorRate: 0 }),
    /** Endpoint: the provider's API, a relay, a ComfyUI server, or `darkroom fake-provider`. */
    baseUrl: z.url().optional(),
    model: z.string().optional(),
    /**
     * Images one request may ask for. Defaults to what the model supports (src/providers/capabilities.ts:
     * Gemini image models 1, known OpenAI models their `n` bound); may lower it, never raise it; needed to
     * batch on a model darkroom does not know (e.g. a relay's). A batch larger than this is split into
     * parallel requests, each counted against the key's limits.
     */
    maxImagesPerRequest: positiveInt.optional(),
    /** ComfyUI workflow template (JSON file path). */
    workflow: z.string().optional(),
    /** A single provider call is abandoned (and classified `timeout`) after this long. */
    timeoutMs: positiveInt.default(120_000), // 2 min
    /** Cool-down of a key after a 429 that carried no Retry-After. */
    defaultRetryAfterMs: positiveInt.default(10_000), // 10 s
    params: z.record(z.string(), z.unknown()).default({}),
    /** What a submit's `params` may set for this provider; unset: the built-in list of its type. */
    taskParams: z.record(z.string(), taskParamSchema).optional(),
  })
  .strict();

const stepSchema = z
  .object({
    name: z.string().min(1),
    /**
     * `transform`: `calls` provider calls whose outputs replace the task's inputs (e.g. beautify);
     * `generate`: the plan's images in batches of `batchSize`; `store`: save each image.
     * Inferred when omitted: no provider → store, batchSize → generate, else transform.
     */
    kind: z.enum(['transform', 'generate', 'store']).optional(),
    provider: z.string().optional(),
    calls: positiveInt.optional(),
    batchSize: positiveInt.optional(),
    /** For `store`: uploads in flight at once across the whole system. */
    concurrency: positiveInt.optional(),
    /** Attempts per job before its images count as failed. */
    maxAttempts: positiveInt.optional(),
    /** Reuse stored results of identical calls (provider, model, prompt, params, seed, input content). */
    cache: z.boolean().default(false),
    prompt: z.string().optional(),
    params: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

const pipelineSchema = z
  .object({
    /** Input roles the task must supply, in order. Default: one optional `input`. */
    inputs: z.array(z.string().min(1)).optional(),
    steps: z.array(stepSchema).min(1),
  })
  .strict();

const planSchema = z
  .object({
    images: positiveInt,
    credits: nonNegativeInt,
    /** Fair-share weight: a weight-5 user gets 5 shares of capacity while all are busy. */
    weight: z.number().positive().default(1),
    /** Tasks whose work has not started by then end `canceled`, fully refunded. */
    deadlineSeconds: positiveInt.optional(),
  })
  .strict();

const storageSchema = z.discriminatedUnion('driver', [
  z
    .object({
      driver: z.literal('local'),
      /** Default: `<home>/files`. */
      dir: z.string().optional(),
      urlExpirySeconds: positiveInt.default(3600),
    })
    .strict(),
  z
    .object({
      driver: z.literal('s3'),
      bucket: z.string().min(1),
      endpoint: z.url().optional(),
      region: z.string().default('auto'),
      /** Like key secrets, `env:NAME` reads the environment. */
      accessKeyId: z.string().min(1),
      secretAccessKey: z.string().min(1),
      forcePathStyle: z.boolean().default(false),
      publicBaseUrl: z.url().optional(),
      urlExpirySeconds: positiveInt.default(3600),
    })
    .strict(),
]);

export const configSchema = z
  .object({
    /** Data directory: PGlite database, local files, signing secret. */
    home: z.string().default('./.darkroom'),
    server: z
      .object({
        port: z.number().int().min(0).max(65535).default(8080),
        host: z.string().default('0.0.0.0'),
        /** Absolute base for URLs in responses; default: from the request's Host. */
        publicUrl: z.url().optional(),
        bodyLimitBytes: positiveInt.default(1024 * 1024), // 1 MiB of JSON
        /** The whole request (line, headers, body) must arrive within this; 0 turns it off. */
        requestTimeoutMs: nonNegativeInt.default(60_000), // 1 min
        /** The request line and headers must arrive within this. */
        headersTimeoutMs: positiveInt.default(15_000), // 15 s
        /** An idle keep-alive connection is closed after this. */
        keepAliveTimeoutMs: positiveInt.default(5_000), // 5 s
        /** A connection with no traffic either way is closed after this (SSE sends a keep-alive every 15 s). */
        connectionTimeoutMs: positiveInt.default(120_000), // 2 min
        /** Requests one API process serves at once (event streams and health checks not counted); past it 503 `server_busy`. */
        maxRequestsInFlight: positiveInt.default(2_000),
        /** SSE streams open at once in one API process. */
        maxEventStreams: positiveInt.default(1_000),
        /** SSE streams open at once for one user's tasks, per API process. */
        maxEventStreamsPerUser: positiveInt.default(10),
        logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    database: z
      .object({
        /** postgres://… selects PostgreSQL; absent means embedded PGlite under `<home>/pgdata`. */
        url: z.string().optional(),
        poolSize: positiveInt.default(10),
        /** PGlite (no url) runs in a worker thread, off the event loop that serves HTTP; false: in-process. */
        pgliteThread: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        maxRunningTasks: positiveInt.default(40),
        maxQueuedTasks: positiveInt.default(10_000),
        perUserRunningTasks: positiveInt.default(2),
        /** Queued (not yet started) tasks one user may hold; more answer 429 `user_queue_full`. */
        perUserQueuedTasks: positiveInt.default(20),
        /** Submits one user may make per minute (fixed window, all API processes together). */
        userSubmitsPerMinute: positiveInt.default(60),
        /** Submits one API key (with the user tokens it issued) may make per minute. */
        keySubmitsPerMinute: positiveInt.default(6000),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** Off only for tests or a trusted network: then every request acts as an admin. */
        enabled: z.boolean().default(true),
        /** An admin key accepted as given (env DARKROOM_ADMIN_KEY); never stored, only its hash. */
        adminKey: z.string().min(16).optional(),
        /** HMAC secret of user tokens (`env:NAME` allowed); default: generated once, kept in the database. */
        tokenSecret: z.string().min(1).optional(),
        /** Lifetime of a user token (`POST /v1/users/:user_id/tokens`). */
        userTokenTtlSeconds: positiveInt.max(24 * 3600).default(900), // 15 min
      })
      .strict()
      .prefault({}),
    credits: z
      .object({ initialGrant: nonNegativeInt.default(1000) })
      .strict()
      .prefault({}),
    plans: z.record(z.string(), planSchema).optional(),
    providers: z.record(z.string(), providerSchema).optional(),
    pipelines: z.record(z.string(), pipelineSchema).optional(),
    scheduler: z
      .object({
        /** Fallback poll interval; NOTIFY wakes the scheduler sooner. */
        pollMs: positiveInt.default(500),
        /** Leader lease; a standby takes over this long after the leader stops renewing. */
        leaderLeaseMs: positiveInt.default(3000),
        /** Extra margin on the 60 s RPM window, for clock and network skew. */
        rpmWindowMarginMs: nonNegativeInt.default(1000),
        /** Seconds of waiting that are worth one extra fair share (aging; bounds starvation). */
        agingSeconds: z.number().positive().default(60),
        /** 0..1: how strongly users with less remaining work go first. */
        shortWorkPreference: z.number().min(0).max(1).default(0.5),
        /** After this many successes in a row a provider's concurrency rises by one. */
        aimdIncreaseAfter: positiveInt.default(10),
        /** A 429 multiplies the provider's effective concurrency by this. */
        aimdDecreaseFactor: z.number().gt(0).lt(1).default(0.5),
      })
      .strict()
      .prefault({}),
    worker: z
      .object({
        /** Jobs one worker process runs at once. */
        concurrency: positiveInt.default(16),
        leaseMs: positiveInt.default(30_000), // 30 s
        heartbeatMs: positiveInt.default(5_000), // 5 s
        maxAttempts: positiveInt.default(3),
        backoffBaseMs: positiveInt.default(1_000),
        backoffMaxMs: positiveInt.default(60_000),
        /**
         * Rate-limited attempts spend no attempt; past this many (or maxRateLimitedWaitMs since the
         * first) the job fails as `provider_rate_limited` and its images are refunded.
         */
        maxRateLimitedRetries: positiveInt.default(20),
        maxRateLimitedWaitMs: positiveInt.default(1_800_000), // 30 min
        /** On SIGTERM: finish running jobs for this long, then release them. */
        shutdownGraceMs: positiveInt.default(20_000),
        pollMs: positiveInt.default(1_000),
      })
      .strict()
      .prefault({}),
    storage: storageSchema.default({ driver: 'local', urlExpirySeconds: 3600 }),
    uploads: z
      .object({
        maxBytes: positiveInt.default(20 * 1024 * 1024), // 20 MiB
        maxPixels: positiveInt.default(40_000_000), // 40 MP
        /** Upload records and their files are removed after this long. */
        retentionHours: positiveInt.default(72),
      })
      .strict()
      .prefault({}),
    /** Retention of finished work, run by the scheduler leader every 10 minutes (0: kept forever). */
    retention: z
      .object({
        /** Events and jobs of a finished task are removed this long after it finished. */
        taskDetailsHours: nonNegativeInt.default(168), // 7 days
        /** A finished task itself, with its images and their files, this long after it finished. */
        finishedTaskHours: nonNegativeInt.default(720), // 30 days
        /** Result cache entries (and their files) this long after they were made. */
        resultCacheHours: nonNegativeInt.default(720), // 30 days
        /** Rows one statement handles: a pass repeats it until a batch comes back short. */
        batchSize: positiveInt.default(500),
      })
      .strict()
      .prefault({}),
    alerts: z
      .object({
        /** Off: no rule is evaluated and no notification sent. */
        enabled: z.boolean().default(true),
        /** How often the scheduler leader evaluates the rules. */
        evaluateEveryMs: positiveInt.default(15_000), // 15 s
        rules: z
          .object({
            queued: z
              .object({ enabled: z.boolean().default(true), threshold: nonNegativeInt.default(50) })
              .strict()
              .prefault({}),
            providerErrorRate: z
              .object({
                enabled: z.boolean().default(true),
                threshold: z.number().min(0).max(1).default(0.1),
                windowSeconds: positiveInt.default(300),
                /** Fewer calls than this in the window never fire the rule. */
                minCalls: positiveInt.default(10),
              })
              .strict()
              .prefault({}),
            rateLimitRate: z
              .object({
                enabled: z.boolean().default(true),
                threshold: z.number().min(0).max(1).default(0.05),
                windowSeconds: positiveInt.default(300),
                minCalls: positiveInt.default(10),
              })
              .strict()
              .prefault({}),
            taskRunning: z
              .object({ enabled: z.boolean().default(true), thresholdSeconds: positiveInt.default(180) })
              .strict()
              .prefault({}),
            noLiveWorker: z
              .object({ enabled: z.boolean().default(true) })
              .strict()
              .prefault({}),
          })
          .strict()
          .prefault({}),
        channels: z
          .array(
            z
              .object({
                /** Names the channel in the admin API; default: its type and position. */
                name: z.string().min(1).optional(),
                type: z.enum(['generic', 'wecom', 'feishu', 'dingtalk', 'slack']),
                url: z.url(),
                /** Feishu and DingTalk signing secret (`env:NAME` allowed). */
                secret: z.string().min(1).optional(),
              })
              .strict(),
          )
          .default([]),
        /** Each notification attempt is abandoned after this long. */
        timeoutMs: positiveInt.default(10_000),
        /** First retry after this long, doubling per attempt. */
        retryBaseMs: positiveInt.default(5_000),
        /** A notification still failing after this many attempts is given up. */
        maxAttempts: positiveInt.default(8),
      })
      .strict()
      .prefault({}),
    webhooks: z
      .object({
        /** `whsec_…` (Standard Webhooks) or `env:NAME`; default: generated once into `<home>/webhook-secret`. */
        signingSecret: z.string().min(1).optional(),
        /** Each delivery attempt is abandoned after this long. */
        timeoutMs: positiveInt.default(10_000), // 10 s
        /** First retry after about this long, ×4 per attempt up to backoffMaxMs. */
        backoffBaseMs: positiveInt.default(5_000), // 5 s
        backoffMaxMs: positiveInt.default(3_600_000), // 1 h
        /** A delivery still failing this long after its event is given up (state `failed`). */
        maxAgeHours: z.number().positive().default(24),
        /** Deliveries one worker process sends at once. */
        concurrency: positiveInt.default(8),
        /** Fallback poll; a NOTIFY wakes the deliverer sooner. */
        pollMs: positiveInt.default(1_000),
      })
      .strict()
      .prefault({}),
    inputs: z
      .object({
        fetchTimeoutMs: positiveInt.default(15_000),
        /** Allow URL inputs that resolve to private/loopback addresses (off: SSRF protection). */
        allowPrivateUrls: z.boolean().default(false),
        allowHosts: z.array(z.string()).default([]),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type ConfigInput = z.input<typeof configSchema>;
type Parsed = z.output<typeof configSchema>;
export type PlanConfig = z.output<typeof planSchema>;
export type ProviderConfig = z.output<typeof providerSchema>;
export type TaskParamSpec = z.output<typeof taskParamSchema>;
export type KeyConfig = z.output<typeof keySchema>;
export type StepConfig = z.output<typeof stepSchema>;
export type PipelineConfig = z.output<typeof pipelineSchema>;
export type StorageConfig = z.output<typeof storageSchema>;
export type ParsedConfig = Parsed;
