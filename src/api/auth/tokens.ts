import { errors, jwtVerify, SignJWT } from 'jose';

/**
 * User tokens: HS256 JWTs (RFC 7519, signed and checked by the `jose` library) naming one user
 * (`sub`) and the API key that issued them (`key`), so revoking that key ends its tokens too.
 */
const ISSUER = 'darkroom';
const AUDIENCE = 'darkroom:user';

export interface UserTokenClaims {
  userId: string;
  keyId: string;
}

export async function issueUserToken(
  secret: Uint8Array,
  claims: UserTokenClaims,
  nowSeconds: number,
  ttlSeconds: number,
): Promise<{ token: string; expiresAt: number }> {
  const expiresAt = nowSeconds + ttlSeconds;
  const token = await new SignJWT({ key: claims.keyId })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject(claims.userId)
    .setIssuedAt(nowSeconds)
    .setExpirationTime(expiresAt)
    .sign(secret);
  return { token, expiresAt };
}

export type TokenCheck = { ok: true; claims: UserTokenClaims } | { ok: false; reason: 'expired' | 'invalid' };

export async function verifyUserToken(secret: Uint8Array, token: string, now: Date): Promise<TokenCheck> {
  try {
    const { payload } = await jwtVerify(token, secret, {
      algorithms: ['HS256'],
      issuer: ISSUER,
      audience: AUDIENCE,
      currentDate: now,
      requiredClaims: ['sub', 'exp'],
    });
    if (typeof payload.sub !== 'string' || typeof payload.key !== 'string')
      return { ok: false, reason: 'invalid' };
    return { ok: true, claims: { userId: payload.sub, keyId: payload.key } };
  } catch (error) {
    if (error instanceof errors.JWTExpired) return { ok: false, reason: 'expired' };
    if (error instanceof errors.JOSEError) return { ok: false, reason: 'invalid' };
    throw error;
  }
}

/** A user token has three dot-separated parts; API keys have none. */
export function looksLikeToken(credential: string): boolean {
  return credential.split('.').length === 3;
}
