import type { FastifyRequest } from 'fastify';

/**
 * Who is asking. Today every request is an `app` caller (the trusted backend in front of
 * darkroom); API keys and per-user tokens will resolve to `admin` or `user` callers here,
 * and handlers already pass the caller to the checks that need it.
 */
export type Caller = { scope: 'app' } | { scope: 'admin' } | { scope: 'user'; userId: string };

export function callerOf(_request: FastifyRequest): Caller {
  return { scope: 'app' };
}

/** A user caller sees only their own user's tasks; another user's task looks absent. */
export function canSeeUser(caller: Caller, userId: string): boolean {
  return caller.scope !== 'user' || caller.userId === userId;
}
