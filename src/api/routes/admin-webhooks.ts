import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Context } from '../../context.ts';
import { listDeliveries } from '../../store/webhooks.ts';
import { parseBody } from '../validation.ts';
import { ADMIN_ONLY } from './admin-stats.ts';

export const deliveriesQuerySchema = z.object({
  task_id: z.string().min(1).max(128).optional(),
  state: z.enum(['pending', 'delivered', 'failed']).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

export function registerAdminWebhookRoutes(app: FastifyInstance, ctx: Context): void {
  app.get('/v1/admin/webhooks/deliveries', ADMIN_ONLY, async (request) => {
    const q = parseBody(deliveriesQuerySchema, request.query, 'query');
    const rows = await listDeliveries(ctx.db, { taskId: q.task_id, state: q.state, limit: q.limit });
    return {
      deliveries: rows.map((d) => ({
        id: d.id,
        task_id: d.task_id,
        event_type: d.event_type,
        url: d.url,
        state: d.state,
        attempts: d.attempts,
        last_status: d.last_status,
        last_error: d.last_error,
        created_at: d.created_at.toISOString(),
        next_attempt_at: d.state === 'pending' ? d.next_attempt_at.toISOString() : null,
        delivered_at: d.delivered_at?.toISOString() ?? null,
      })),
    };
  });
}
