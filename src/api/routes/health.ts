import type { FastifyInstance } from 'fastify';
import type { Context } from '../../context.ts';
import { ping } from '../../store/db.ts';
import { scope } from '../auth/scope.ts';

export function registerHealthRoutes(app: FastifyInstance, ctx: Context, isReady: () => boolean): void {
  /** Liveness: the process answers. */
  app.get('/healthz', scope('public'), async () => ({ ok: true }));
  /** Readiness: started, and the database answers. */
  app.get('/readyz', scope('public'), async (_request, reply) => {
    if (!isReady())
      return reply
        .status(503)
        .send({ error: { code: 'not_ready', message: 'starting up or shutting down' } });
    try {
      await ping(ctx.db);
    } catch {
      return reply
        .status(503)
        .send({ error: { code: 'not_ready', message: 'the database does not answer' } });
    }
    return { ok: true, database: ctx.db.kind };
  });
}
