import type { FastifyInstance } from 'fastify';
import type { Context } from '../../context.ts';
import { ADMIN_ONLY } from './admin-stats.ts';

/** Prometheus text format: this process's own series plus the cluster's, read from the database now. */
export function registerMetricsRoute(app: FastifyInstance, ctx: Context): void {
  app.get('/metrics', ADMIN_ONLY, async (_request, reply) => {
    const telemetry = ctx.telemetry;
    if (!telemetry)
      return reply.status(404).send({ error: { code: 'not_found', message: 'metrics are off' } });
    await telemetry.refreshDbMetrics(ctx.db);
    const text = await telemetry.registry.metrics();
    return reply.type(telemetry.registry.contentType).send(text);
  });
}
