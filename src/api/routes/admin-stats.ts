import type { FastifyInstance } from 'fastify';
import type { Context } from '../../context.ts';
import { scope } from '../auth/scope.ts';
import { collectProviders } from '../../telemetry/providers.ts';
import { collectStats } from '../../telemetry/stats.ts';

/** Route options of every admin route: the auth hook lets only `admin` callers through. */
export const ADMIN_ONLY = scope('admin');

export function registerAdminStatsRoutes(app: FastifyInstance, ctx: Context): void {
  app.get('/v1/admin/stats', ADMIN_ONLY, async () => collectStats(ctx.db, ctx.config));
  app.get('/v1/admin/providers', ADMIN_ONLY, async () => ({
    providers: await collectProviders(ctx.db, ctx.config),
  }));
}
