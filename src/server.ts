import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import pino, { type Logger } from 'pino';
import { buildApp } from './api/app.ts';
import { bootstrapKeys } from './api/auth/bootstrap.ts';
import type { Config } from './config/load.ts';
import { fileSigningSecret } from './config/secret-file.ts';
import type { Context } from './context.ts';
import { coerceError } from './errors.ts';
import { createProviders } from './providers/registry.ts';
import { stopForecaster } from './scheduler/forecaster.ts';
import { startScheduler, type SchedulerHandle } from './scheduler/scheduler.ts';
import { createStorage } from './storage/index.ts';
import type { Storage } from './storage/types.ts';
import { openDb } from './store/index.ts';
import { migrate } from './store/migrate.ts';
import { startWorker, type WorkerHandle } from './worker/worker.ts';
import { createTelemetry } from './telemetry/telemetry.ts';
import { startLeaderLoop, type LeaderLoopHandle } from './alerts/loop.ts';
import { startDeliverer, type DelivererHandle } from './webhooks/deliverer.ts';
import { resolveSigningSecret } from './webhooks/signing.ts';
import type { FastifyInstance } from 'fastify';

export const ROLES = ['api', 'worker', 'scheduler'] as const;
export type Role = (typeof ROLES)[number];

export interface ServerOptions {
  roles?: readonly Role[];
  log?: Logger;
  /** Random source for backoff jitter and the simulator (tests pass a seeded one). */
  random?: () => number;
  /** Where the first start's admin key is printed (default: stdout). */
  announce?: (text: string) => void;
}

export interface RunningServer {
  ctx: Context;
  /** Listening address of the API (when the api role runs). */
  url: string | undefined;
  app: FastifyInstance | undefined;
  scheduler: SchedulerHandle | undefined;
  worker: WorkerHandle | undefined;
  stop(): Promise<void>;
}

function firstKeyBanner(first: { key: string; file: string }, url: string): string {
  const shown = url.replace('://0.0.0.0:', '://localhost:').replace('://[::]:', '://localhost:');
  return [
    '',
    `darkroom is listening on ${shown}`,
    'First start: created an admin API key. It is shown only this once and kept in',
    `${first.file} (mode 0600):`,
    '',
    `  ${first.key}`,
    '',
    `  export DARKROOM_KEY=$(cat ${first.file})`,
    `  curl -H "Authorization: Bearer $DARKROOM_KEY" ${shown}/v1/tasks`,
    '',
    'Create app keys with `darkroom keys create --scope app --name <name>`.',
    '',
  ].join('\n');
}

export function storageFor(config: Config, signingSecret: string): Promise<Storage> {
  const s = config.storage;
  if (s.driver === 'local')
    return createStorage({ driver: 'local', dir: s.dir ?? path.join(config.home, 'files'), signingSecret });
  return createStorage({
    driver: 's3',
    bucket: s.bucket,
    region: s.region,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
    forcePathStyle: s.forcePathStyle,
    urlExpirySeconds: s.urlExpirySeconds,
    ...(s.endpoint ? { endpoint: s.endpoint } : {}),
    ...(s.publicBaseUrl ? { publicBaseUrl: s.publicBaseUrl } : {}),
  });
}

/** Composition root: opens the database, migrates, and starts the requested roles. */
export async function startServer(config: Config, options: ServerOptions = {}): Promise<RunningServer> {
  const roles = new Set(options.roles ?? ROLES);
  const log = options.log ?? pino({ level: config.server.logLevel });
  const db = await openDb(config, (error) => log.warn({ err: error }, 'database connection error'));
  const applied = await migrate(db);
  if (applied.length > 0) log.info({ applied }, 'migrations applied');
  const signingSecret = fileSigningSecret(config.home);
  const ctx: Context = {
    db,
    config,
    storage: await storageFor(config, signingSecret),
    log,
    providers: createProviders(config),
    random: options.random ?? Math.random,
  };
  ctx.telemetry = createTelemetry(db, config, log);
  for (const p of Object.values(config.providers)) {
    for (const k of p.keys)
      if (k.secretMissing)
        log.warn({ provider: p.name, key: k.id }, 'key secret not found in the environment; key skipped');
  }
  for (const warning of config.warnings ?? []) log.warn(warning);
  const instance = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  let ready = false;
  const worker = roles.has('worker')
    ? await startWorker(ctx, `worker:${instance}`, [...roles].join(','))
    : undefined;
  const deliverer: DelivererHandle | undefined = roles.has('worker')
    ? await startDeliverer(ctx, { secret: resolveSigningSecret(config.webhooks.signingSecret, config.home) })
    : undefined;
  const scheduler = roles.has('scheduler') ? await startScheduler(ctx, `scheduler:${instance}`) : undefined;
  const leaderLoop: LeaderLoopHandle | undefined = scheduler
    ? startLeaderLoop(ctx, {
        isLeader: () => scheduler.isLeader(),
        intervalMs: Math.min(5_000, config.alerts.evaluateEveryMs),
      })
    : undefined;
  let app: FastifyInstance | undefined;
  let url: string | undefined;
  if (roles.has('api')) {
    const firstKey = await bootstrapKeys(ctx);
    app = await buildApp(ctx, { signingSecret, isReady: () => ready });
    url = await app.listen({ port: config.server.port, host: config.server.host });
    log.info({ url, database: db.kind, roles: [...roles] }, 'darkroom is listening');
    if (firstKey) (options.announce ?? ((t) => process.stdout.write(t)))(firstKeyBanner(firstKey, url));
    else if (!config.auth.enabled)
      log.warn('auth is off (auth.enabled: false): every request acts as an admin');
  }
  ready = true;
  let stopping: Promise<void> | undefined;
  return {
    ctx,
    url,
    app,
    scheduler,
    worker,
    stop() {
      stopping ??= (async () => {
        ready = false;
        try {
          // Together: the worker's grace period starts at the signal, not once the last HTTP
          // connection is gone.
          await Promise.all([app?.close(), worker?.stop()]);
          await leaderLoop?.stop();
          await deliverer?.stop();
          await scheduler?.stop();
          await stopForecaster(ctx);
          for (const adapter of ctx.providers.values()) await adapter.close?.();
          await ctx.storage.close?.();
        } catch (error) {
          log.error({ err: coerceError(error) }, 'error while stopping');
        } finally {
          await db.close();
        }
      })();
      return stopping;
    },
  };
}
