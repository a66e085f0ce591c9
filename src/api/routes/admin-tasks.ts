import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Context } from '../../context.ts';
import { AppError } from '../../errors.ts';
import { retryTask } from '../../pipeline/retry.ts';
import { cancelTask } from '../../pipeline/transitions.ts';
import { adjustCredits, getBalance, ledgerOf } from '../../store/credits.ts';
import { eventsAfter } from '../../store/events.ts';
import { getTaskView, listTasks } from '../../store/tasks.ts';
import { scope } from '../auth/scope.ts';
import { callerOf } from '../caller.ts';
import { parseBody } from '../validation.ts';
import { viewOf } from '../views.ts';

const listSchema = z
  .object({
    state: z.enum(['queued', 'running', 'succeeded', 'partial', 'failed', 'canceled']).optional(),
    plan: z.string().min(1).max(64).optional(),
    user_id: z.string().min(1).max(128).optional(),
    created_after: z.iso.datetime({ offset: true }).optional(),
    created_before: z.iso.datetime({ offset: true }).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    cursor: z.string().max(64).optional(),
  })
  .strict();

export const eventsQuerySchema = z
  .object({
    /** Events with a larger id than this (the `next_after` of the previous page). */
    after: z.coerce.number().int().min(0).default(0),
    limit: z.coerce.number().int().min(1).max(500).default(200),
  })
  .strict();
/** Why, kept in the `retried` event (optional). */
export const retrySchema = z.object({ reason: z.string().trim().min(1).max(500).optional() }).strict();

const adjustSchema = z
  .object({
    delta: z
      .number()
      .int()
      .refine((n) => n !== 0, 'must not be 0')
      .refine((n) => Math.abs(n) <= 1_000_000_000, 'must be at most 1e9 in size'),
    reason: z.string().trim().min(1).max(500),
  })
  .strict();

/** The operator's view of tasks and credits: every user, every filter. Admin keys only. */
export function registerAdminTaskRoutes(app: FastifyInstance, ctx: Context): void {
  app.get('/v1/admin/tasks', scope('admin'), async (request: FastifyRequest) => {
    const q = parseBody(listSchema, request.query, 'query');
    const rows = await listTasks(ctx.db, {
      state: q.state,
      plan: q.plan,
      userId: q.user_id,
      createdAfter: q.created_after ? new Date(q.created_after) : undefined,
      createdBefore: q.created_before ? new Date(q.created_before) : undefined,
      limit: q.limit + 1,
      cursor: q.cursor,
    });
    const page = rows.slice(0, q.limit);
    return {
      tasks: await Promise.all(page.map((t) => viewOf(ctx, request, t))),
      next_cursor: rows.length > q.limit ? page[page.length - 1]!.id : null,
    };
  });

  /** A task's event history from the outbox, oldest first, in keyset pages of event ids. */
  app.get(
    '/v1/admin/tasks/:id/events',
    scope('admin'),
    async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const q = parseBody(eventsQuerySchema, request.query, 'query');
      const task = await getTaskView(ctx.db, request.params.id);
      if (!task) throw new AppError('task_not_found', `task "${request.params.id}" does not exist`);
      const rows = await eventsAfter(ctx.db, task.id, q.after, q.limit + 1);
      const page = rows.slice(0, q.limit);
      return {
        task_id: task.id,
        events: page.map((e) => ({
          id: e.id,
          type: e.type,
          data: e.data,
          created_at: e.created_at.toISOString(),
        })),
        next_after: rows.length > q.limit ? page[page.length - 1]!.id : null,
      };
    },
  );

  app.post(
    '/v1/admin/tasks/:id/cancel',
    scope('admin'),
    async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const task = await getTaskView(ctx.db, request.params.id);
      if (!task) throw new AppError('task_not_found', `task "${request.params.id}" does not exist`);
      if (task.state !== 'queued' && task.state !== 'running') {
        throw new AppError('task_not_cancelable', `task "${task.id}" already ended (${task.state})`);
      }
      const by = callerOf(request).keyId ?? 'admin';
      await ctx.db.transaction((tx) => cancelTask(tx, task.id, `canceled by an administrator (${by})`));
      return viewOf(ctx, request, (await getTaskView(ctx.db, task.id)) ?? task);
    },
  );

  /** Runs a failed or partial task's undelivered images again, charging only those (src/pipeline/retry.ts). */
  app.post(
    '/v1/admin/tasks/:id/retry',
    scope('admin'),
    async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
      const body = parseBody(retrySchema, request.body ?? {});
      const key = callerOf(request).keyId ?? 'admin';
      const by = body.reason ? `${key}: ${body.reason}` : key;
      await retryTask(ctx.db, ctx.config, request.params.id, by);
      const task = await getTaskView(ctx.db, request.params.id);
      if (!task) throw new AppError('task_not_found', `task "${request.params.id}" does not exist`);
      return reply.status(202).send(await viewOf(ctx, request, task));
    },
  );

  /** Adds (or removes) credits with a reason kept in the ledger row. */
  app.post(
    '/v1/admin/users/:user_id/credits',
    scope('admin'),
    async (request: FastifyRequest<{ Params: { user_id: string } }>) => {
      const userId = parseBody(z.string().min(1).max(128), request.params.user_id, 'user_id');
      const body = parseBody(adjustSchema, request.body);
      const by = callerOf(request).keyId ?? 'auth off';
      const balance = await ctx.db.transaction((tx) =>
        adjustCredits(tx, userId, body.delta, ctx.config.credits.initialGrant, `${body.reason} (by ${by})`),
      );
      return { user_id: userId, balance, delta: body.delta, reason: body.reason };
    },
  );

  /** A user's balance and newest ledger rows: charges, refunds, grants and adjustments with reasons. */
  app.get(
    '/v1/admin/users/:user_id/credits',
    scope('admin'),
    async (request: FastifyRequest<{ Params: { user_id: string } }>) => {
      const userId = request.params.user_id;
      const balance = await getBalance(ctx.db, userId);
      if (balance === undefined) throw new AppError('not_found', `user "${userId}" not found`);
      const ledger = await ledgerOf(ctx.db, userId, 100);
      return {
        user_id: userId,
        balance,
        ledger: ledger.map((r) => ({ ...r, created_at: r.created_at.toISOString() })),
      };
    },
  );
}
