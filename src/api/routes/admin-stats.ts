import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { scope } from '../auth/scope.ts';
import { collectProviders } from '../../telemetry/providers.ts';
import { collectSeries } from '../../telemetry/series.ts';
import { collectStats } from '../../telemetry/stats.ts';
import { endAdminStreams, streamAdminStats } from '../admin-stream.ts';

/** Route options of every admin route: the auth hook lets only `admin` callers through. */
export const ADMIN_ONLY = scope('admin');

export function registerAdminStatsRoutes(app: FastifyInstance, ctx: Context): void {
  app.get('/v1/admin/stats', ADMIN_ONLY, async () => collectStats(ctx.db, ctx.config));
  app.get('/v1/admin/stats/series', ADMIN_ONLY, async () => collectSeries(ctx.db));
  app.get('/v1/admin/stream', ADMIN_ONLY, (request: FastifyRequest, reply: FastifyReply) =>
    streamAdminStats(ctx, request, reply),
  );
  endAdminStreams(app, ctx);
  app.get('/v1/admin/providers', ADMIN_ONLY, async () => ({
    providers: await collectProviders(ctx.db, ctx.config),
  }));
}
