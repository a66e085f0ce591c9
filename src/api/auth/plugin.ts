import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { AppError } from '../../errors.ts';
import { findApiKeyByHash, getApiKey, touchApiKey } from '../../store/api-keys.ts';
import type { Caller } from '../caller.ts';
import { fingerprint, hashApiKey } from './keys.ts';
import { allows } from './scope.ts';
import { looksLikeToken, verifyUserToken } from './tokens.ts';

export interface AuthRuntime {
  enabled: boolean;
  /** HMAC secret of user tokens (read once, on first use). */
  tokenSecret: () => Promise<Uint8Array>;
  now: () => Date;
}

const TOUCH_EVERY_MS = 60_000;

/**
 * The auth hook: reads `Authorization: Bearer …`, resolves it to a Caller on `request.caller`
 * and checks it against the route's declared scope. No valid credential: 401 `unauthorized`;
 * a valid one without the scope: 403 `forbidden`. Rejected credentials are logged by a short
 * fingerprint, never by value.
 */
export function installAuth(app: FastifyInstance, ctx: Context, auth: AuthRuntime): void {
  const touched = new Map<string, number>();
  app.decorateRequest('caller', undefined);
  app.addHook('onRequest', async (request) => {
    if (request.is404) return;
    const required = request.routeOptions.config.scope ?? 'admin';
    if (required === 'public') return;
    if (!auth.enabled) {
      request.caller = { scope: 'admin', keyId: null };
      return;
    }
    const caller = await authenticate(request);
    if (!allows(caller, required)) {
      throw new AppError(
        'forbidden',
        `this route needs ${required === 'admin' ? 'an admin' : 'an app or admin'} key`,
      );
    }
    request.caller = caller;
    const last = touched.get(caller.keyId!) ?? 0;
    if (auth.now().getTime() - last > TOUCH_EVERY_MS) {
      touched.set(caller.keyId!, auth.now().getTime());
      await touchApiKey(ctx.db, caller.keyId!);
    }
  });

  const reject = (request: FastifyRequest, credential: string, why: string, message: string): never => {
    request.log.warn(
      { credential: fingerprint(credential), why, ip: request.ip, route: request.routeOptions.url },
      'request with a bad credential rejected',
    );
    throw new AppError('unauthorized', message);
  };

  async function authenticate(request: FastifyRequest): Promise<Caller> {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) {
      throw new AppError(
        'unauthorized',
        header === undefined
          ? 'send an API key or a user token as "Authorization: Bearer …"'
          : 'the Authorization header must be "Bearer <key or token>"',
      );
    }
    const credential = match[1]!;
    if (looksLikeToken(credential)) {
      const check = await verifyUserToken(await auth.tokenSecret(), credential, auth.now());
      if (!check.ok) {
        return reject(
          request,
          credential,
          `token ${check.reason}`,
          check.reason === 'expired' ? 'the user token has expired' : 'the user token is not valid',
        );
      }
      const issuer = await getApiKey(ctx.db, check.claims.keyId);
      if (!issuer || issuer.revoked_at) {
        return reject(
          request,
          credential,
          'token of a revoked key',
          'the key that issued this user token was revoked',
        );
      }
      return {
        scope: 'user',
        userId: check.claims.userId,
        keyId: issuer.id,
        keyWebhookUrl: issuer.webhook_url,
      };
    }
    const key = await findApiKeyByHash(ctx.db, hashApiKey(credential));
    if (!key) return reject(request, credential, 'unknown key', 'the API key is not valid');
    if (key.revoked_at)
      return reject(request, credential, `revoked key ${key.id}`, 'the API key was revoked');
    return key.scope === 'admin'
      ? { scope: 'admin', keyId: key.id, keyWebhookUrl: key.webhook_url }
      : { scope: 'app', keyId: key.id, keyWebhookUrl: key.webhook_url };
  }
}
