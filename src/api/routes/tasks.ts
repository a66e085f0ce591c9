import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Context } from '../../context.ts';
import { AppError } from '../../errors.ts';
import { withResolvedInputs } from '../../pipeline/inputs.ts';
import { checkTaskParams } from '../../pipeline/params.ts';
import { checkTaskShape, hashRequest, replayIdempotent, submitTask } from '../../pipeline/submit.ts';
import { cancelTask } from '../../pipeline/transitions.ts';
import { getBalance } from '../../store/credits.ts';
import { getTaskView, listTasks, type TaskViewRow } from '../../store/tasks.ts';
import { scope } from '../auth/scope.ts';
import { callerOf, canSeeUser, ownUserOf, type Caller } from '../caller.ts';
import { parseBody } from '../validation.ts';
import { checkWebhookUrl } from '../../webhooks/url-policy.ts';
import { viewOf } from '../views.ts';
import { endTaskStreams, streamTaskEvents } from '../sse.ts';

const idText = z.string().min(1).max(128);

export const submitSchema = z
  .object({
    user_id: idText,
    order_id: idText.optional(),
    type: z.string().min(1).max(64),
    plan: z.string().min(1).max(64),
    prompt: z.string().max(8000).optional(),
    inputs: z
      .array(
        z.union([
          z.object({ upload_id: idText, role: z.string().max(64).optional() }).strict(),
          z.object({ url: z.string().min(1).max(4096), role: z.string().max(64).optional() }).strict(),
        ]),
      )
      .max(8)
      .default([]),
    params: z.record(z.string(), z.unknown()).default({}),
    webhook_url: z.string().min(1).max(2048).optional(),
    webhook_stages: z.boolean().optional(),
    deadline_seconds: z
      .number()
      .int()
      .positive()
      .max(7 * 24 * 3600)
      .optional(),
  })
  .strict();

export const listSchema = z.object({
  user_id: idText.optional(),
  state: z.enum(['queued', 'running', 'succeeded', 'partial', 'failed', 'canceled']).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(64).optional(),
});

async function visibleTask(ctx: Context, caller: Caller, id: string): Promise<TaskViewRow> {
  const task = await getTaskView(ctx.db, id);
  if (!task || !canSeeUser(caller, task.user_id))
    throw new AppError('task_not_found', `task "${id}" does not exist`);
  return task;
}

/**
 * The one Idempotency-Key header, if any. Node joins repeated headers with ", ", which would
 * make two different keys one: the raw header list is counted instead.
 */
function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const raw = request.raw.rawHeaders;
  const values: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'idempotency-key') values.push(raw[i + 1]!);
  }
  const key = values[0];
  if (values.length > 1 || (key !== undefined && (key.length === 0 || key.length > 255))) {
    throw new AppError('validation_failed', 'Idempotency-Key must be one header of 1 to 255 characters');
  }
  return key;
}

export function registerTaskRoutes(
  app: FastifyInstance,
  ctx: Context,
  now: () => Date = () => new Date(),
): void {
  endTaskStreams(app, ctx);
  app.post('/v1/tasks', scope('user'), async (request: FastifyRequest, reply: FastifyReply) => {
    const caller = callerOf(request);
    const body = parseBody(submitSchema, request.body);
    if (!canSeeUser(caller, body.user_id))
      throw new AppError('forbidden', 'a user token can only submit for its own user');
    checkTaskShape(ctx.config, body.type, body.plan);
    checkTaskParams(ctx.config, body.type, body.params);
    // Without a webhook_url of its own, a submit uses its key's default (checked at key creation).
    const webhook = body.webhook_url
      ? { url: checkWebhookUrl(ctx.config, body.webhook_url), stages: body.webhook_stages ?? false }
      : caller.keyWebhookUrl
        ? { url: caller.keyWebhookUrl, stages: body.webhook_stages ?? false }
        : undefined;
    const idempotencyKey = idempotencyKeyOf(request);
    const requestHash = hashRequest(request.body);
    if (idempotencyKey !== undefined) {
      // A replay answers from the stored response without fetching or checking its inputs again.
      const previous = await replayIdempotent(ctx.db, idempotencyKey, requestHash);
      if (previous) return reply.status(previous.status).send(previous.body);
    }
    const result = await withResolvedInputs(ctx, body.type, body.inputs, ownUserOf(caller), (inputs) =>
      submitTask(
        ctx.db,
        ctx.config,
        {
          userId: body.user_id,
          orderId: body.order_id,
          type: body.type,
          plan: body.plan,
          prompt: body.prompt ?? '',
          inputs,
          params: body.params,
          deadlineSeconds: body.deadline_seconds,
          idempotencyKey,
          requestHash,
          // With auth on, only keys create users: a token's user was created when its token was issued.
          mayCreateUser: caller.scope !== 'user',
          webhook,
          keyId: caller.keyId,
          now: now(),
        },
        ctx.log,
      ),
    );
    return reply.status(result.status).send(result.body);
  });

  app.get('/v1/tasks/:id', scope('user'), async (request: FastifyRequest<{ Params: { id: string } }>) => {
    const task = await visibleTask(ctx, callerOf(request), request.params.id);
    return viewOf(ctx, request, task);
  });

  app.get('/v1/tasks', scope('user'), async (request: FastifyRequest) => {
    const caller = callerOf(request);
    const q = parseBody(listSchema, request.query, 'query');
    const userId = caller.scope === 'user' ? caller.userId : q.user_id;
    const rows = await listTasks(ctx.db, { userId, state: q.state, limit: q.limit + 1, cursor: q.cursor });
    const page = rows.slice(0, q.limit);
    return {
      tasks: await Promise.all(page.map((t) => viewOf(ctx, request, t))),
      next_cursor: rows.length > q.limit ? page[page.length - 1]!.id : null,
    };
  });

  app.post(
    '/v1/tasks/:id/cancel',
    scope('user'),
    async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const task = await visibleTask(ctx, callerOf(request), request.params.id);
      if (task.state !== 'queued' && task.state !== 'running') {
        throw new AppError('task_not_cancelable', `task "${task.id}" already ended (${task.state})`);
      }
      await ctx.db.transaction((tx) => cancelTask(tx, task.id, 'canceled by request'));
      return viewOf(ctx, request, (await getTaskView(ctx.db, task.id)) ?? task);
    },
  );

  app.get(
    '/v1/tasks/:id/events',
    scope('user'),
    async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
      const task = await visibleTask(ctx, callerOf(request), request.params.id);
      await streamTaskEvents(ctx, request, reply, task);
    },
  );

  app.get(
    '/v1/users/:user_id/credits',
    scope('user'),
    async (request: FastifyRequest<{ Params: { user_id: string } }>) => {
      const caller = callerOf(request);
      const userId = request.params.user_id;
      if (!canSeeUser(caller, userId)) throw new AppError('not_found', `user "${userId}" not found`);
      const balance = await getBalance(ctx.db, userId);
      // A user darkroom has not seen yet will get the initial grant on their first task.
      return { user_id: userId, balance: balance ?? ctx.config.credits.initialGrant };
    },
  );
}
