import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Context } from '../../context.ts';
import { ensureUser } from '../../store/credits.ts';
import { scope } from '../auth/scope.ts';
import type { AuthRuntime } from '../auth/plugin.ts';
import { issueUserToken } from '../auth/tokens.ts';
import { callerOf } from '../caller.ts';
import { parseBody } from '../validation.ts';

const userIdSchema = z.string().min(1).max(128);

export function registerUserRoutes(app: FastifyInstance, ctx: Context, auth: AuthRuntime): void {
  /**
   * A short-lived token for a front end that talks to darkroom directly: it acts as this one
   * user. Issuing it creates the user (with the initial grant) — an app vouches for its users;
   * a token cannot create anyone.
   */
  app.post(
    '/v1/users/:user_id/tokens',
    scope('app'),
    async (request: FastifyRequest<{ Params: { user_id: string } }>, reply: FastifyReply) => {
      const caller = callerOf(request);
      const userId = parseBody(userIdSchema, request.params.user_id, 'user_id');
      const body = parseBody(
        z
          .object({
            ttl_seconds: z.number().int().positive().max(ctx.config.auth.userTokenTtlSeconds).optional(),
          })
          .strict(),
        request.body ?? {},
      );
      await ctx.db.transaction((tx) => ensureUser(tx, userId, ctx.config.credits.initialGrant));
      const nowSeconds = Math.floor(auth.now().getTime() / 1000);
      const { token, expiresAt } = await issueUserToken(
        await auth.tokenSecret(),
        { userId, keyId: caller.keyId ?? 'auth-off' },
        nowSeconds,
        body.ttl_seconds ?? ctx.config.auth.userTokenTtlSeconds,
      );
      return reply.status(201).send({
        user_id: userId,
        token,
        expires_at: new Date(expiresAt * 1000).toISOString(),
      });
    },
  );
}
