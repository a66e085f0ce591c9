import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Context } from '../../context.ts';
import { recentAlerts, type AlertRow, type NotificationRow } from '../../store/alerts.ts';
import { parseBody } from '../validation.ts';
import { ADMIN_ONLY } from './admin-stats.ts';

export const alertsQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) });

function alertView(a: AlertRow & { notifications: NotificationRow[] }) {
  return {
    id: a.id,
    rule: a.rule,
    key: a.key,
    state: a.state,
    value: a.value,
    threshold: a.threshold,
    summary: a.summary,
    fired_at: a.fired_at.toISOString(),
    resolved_at: a.resolved_at?.toISOString() ?? null,
    notifications: a.notifications.map((n) => ({
      kind: n.kind,
      channel: n.channel,
      type: n.channel_type,
      state: n.state,
      attempts: n.attempts,
      last_error: n.last_error,
      delivered_at: n.delivered_at?.toISOString() ?? null,
    })),
  };
}

export function registerAdminAlertRoutes(app: FastifyInstance, ctx: Context): void {
  app.get('/v1/admin/alerts', ADMIN_ONLY, async (request) => {
    const q = parseBody(alertsQuerySchema, request.query, 'query');
    const alerts = (await recentAlerts(ctx.db, q.limit)).map(alertView);
    return { firing: alerts.filter((a) => a.state === 'firing'), history: alerts };
  });
}
