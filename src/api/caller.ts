import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';

/**
 * Who is asking, as the auth hook (src/api/auth/plugin.ts) resolved it: an admin or app API
 * key, or a user token that acts for one user only. `keyId` is the key (or, for a token, the
 * key that issued it); null when auth is off.
 */
export type Caller = (
  | { scope: 'admin'; keyId: string | null }
  | { scope: 'app'; keyId: string }
  | { scope: 'user'; userId: string; keyId: string }
) & {
  /** The key's default task webhook (`darkroom keys create --webhook-url`), if it has one. */
  keyWebhookUrl?: string | null;
};

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller | undefined;
  }
}

export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) {
    // A handler asked for the caller on a route declared public: a programming error.
    throw new AppError('internal', `route ${request.routeOptions.url ?? request.url} has no caller`);
  }
  return request.caller;
}

/** A user caller sees only their own user's tasks; another user's task looks absent. */
export function canSeeUser(caller: Caller, userId: string): boolean {
  return caller.scope !== 'user' || caller.userId === userId;
}

/** The user a user token is bound to; undefined for key callers (who may act for any user). */
export function ownUserOf(caller: Caller): string | undefined {
  return caller.scope === 'user' ? caller.userId : undefined;
}
