import multipart from '@fastify/multipart';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Context } from '../context.ts';
import { tokenSecretOf } from './auth/bootstrap.ts';
import { installAuth, type AuthRuntime } from './auth/plugin.ts';
import { clientErrorHandler, frameworkErrors, installErrorHandler } from './error-handler.ts';
import { installInFlightLimit } from './inflight-limit.ts';
import { collectRoutes, registerOpenApiRoutes } from './openapi.ts';
import { registerAdminAlertRoutes } from './routes/admin-alerts.ts';
import { registerAdminCapacityRoutes } from './routes/admin-capacity.ts';
import { registerAdminStatsRoutes } from './routes/admin-stats.ts';
import { registerAdminTaskRoutes } from './routes/admin-tasks.ts';
import { registerAdminWebhookRoutes } from './routes/admin-webhooks.ts';
import { registerDashboardRoutes } from './routes/dashboard.ts';
import { registerFileRoutes } from './routes/files.ts';
import { registerHealthRoutes } from './routes/health.ts';
import { registerMetricsRoute } from './routes/metrics.ts';
import { registerTaskRoutes } from './routes/tasks.ts';
import { registerUploadRoutes } from './routes/uploads.ts';
import { registerUserRoutes } from './routes/users.ts';
import { refuseUnstorableInput } from './validation.ts';

export interface AppOptions {
  /** Secret of local-storage file URLs (verified by /v1/files). */
  signingSecret: string;
  isReady?: () => boolean;
  /** The clock of token expiry and submit rate windows (tests inject one). */
  now?: () => Date;
}

/**
 * Fastify's and Node's timeouts, so slow or silent clients cannot hold sockets for long: the
 * request must arrive within requestTimeoutMs (headers within headersTimeoutMs), idle keep-alive
 * connections close after keepAliveTimeoutMs, any connection silent both ways after
 * connectionTimeoutMs. Node checks the first two on a timer (default every 30 s): it runs here
 * at a quarter of the shorter one.
 */
function serverTimeouts(server: Context['config']['server']) {
  const request = server.requestTimeoutMs;
  const headers = request > 0 ? Math.min(server.headersTimeoutMs, request) : server.headersTimeoutMs;
  return {
    requestTimeout: request,
    keepAliveTimeout: server.keepAliveTimeoutMs,
    connectionTimeout: server.connectionTimeoutMs,
    http: {
      requestTimeout: request,
      headersTimeout: headers,
      connectionsCheckingInterval: Math.min(30_000, Math.max(25, Math.floor(headers / 4))),
    },
  };
}

/** The HTTP API as a Fastify instance, not listening: tests use inject(), `serve` listens. */
export async function buildApp(ctx: Context, options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    bodyLimit: ctx.config.server.bodyLimitBytes,
    // Request lines at info level would drown the job logs; errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: true,
    // Room for ids of up to 128 characters in a path (Fastify's default is 100).
    routerOptions: { maxParamLength: 256 },
    frameworkErrors,
    clientErrorHandler,
    ...serverTimeouts(ctx.config.server),
  });
  installErrorHandler(app);
  // First of the onRequest hooks: a refused request costs no authentication.
  installInFlightLimit(app, ctx.config.server.maxRequestsInFlight, ctx.telemetry?.registry);
  app.addHook('preValidation', refuseUnstorableInput);
  let secret: Promise<Uint8Array> | undefined;
  const auth: AuthRuntime = {
    enabled: ctx.config.auth.enabled,
    tokenSecret: () =>
      (secret ??= tokenSecretOf(ctx).catch((error: unknown) => {
        secret = undefined; // a database blip must not poison every later request
        throw error;
      })),
    now: options.now ?? (() => new Date()),
  };
  installAuth(app, ctx, auth);
  await app.register(multipart, {
    limits: { fileSize: ctx.config.uploads.maxBytes, files: 1, fields: 10, parts: 12 },
    throwFileSizeLimit: true,
  });
  const routes = collectRoutes(app);
  registerHealthRoutes(app, ctx, options.isReady ?? (() => true));
  registerTaskRoutes(app, ctx, auth.now);
  registerUploadRoutes(app, ctx);
  registerUserRoutes(app, ctx, auth);
  registerFileRoutes(app, ctx, options.signingSecret);
  registerAdminStatsRoutes(app, ctx);
  registerAdminTaskRoutes(app, ctx);
  registerMetricsRoute(app, ctx);
  registerAdminWebhookRoutes(app, ctx);
  registerAdminAlertRoutes(app, ctx);
  registerAdminCapacityRoutes(app, ctx);
  await registerDashboardRoutes(app);
  registerOpenApiRoutes(app, ctx, routes);
  return app;
}
