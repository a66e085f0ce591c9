import type { Caller } from '../caller.ts';

/**
 * What a route asks of its caller, declared with the route: `app.get(path, scope('admin'), h)`.
 * - `public`: no credential (health checks, signed file links);
 * - `user`: a user token, or an app or admin key (handlers then limit a token to its user);
 * - `app`: an app or admin key; `admin`: an admin key.
 * A route that declares nothing is `admin`: forgetting the declaration fails closed.
 */
export type RouteScope = 'public' | 'user' | 'app' | 'admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: RouteScope;
  }
}

export function scope(required: RouteScope): { config: { scope: RouteScope } } {
  return { config: { scope: required } };
}

export function allows(caller: Caller, required: Exclude<RouteScope, 'public'>): boolean {
  if (required === 'user') return true;
  if (required === 'app') return caller.scope === 'app' || caller.scope === 'admin';
  return caller.scope === 'admin';
}
