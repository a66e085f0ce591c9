import { createHash, randomBytes } from 'node:crypto';

/**
 * API keys: `drk_` + 32 random bytes (base64url), so a key is unguessable and a hash of it is
 * enough to find it (no salt needed at 256 bits of entropy). The first 12 characters are the
 * key's public id, shown by `darkroom keys list` and used to revoke it.
 */
export const KEY_PREFIX = 'drk_';
const ID_LENGTH = 12;

export type KeyScope = 'app' | 'admin';

export function generateApiKey(): { key: string; id: string; hash: string } {
  const key = `${KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, id: key.slice(0, ID_LENGTH), hash: hashApiKey(key) };
}

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A short fingerprint to name a rejected credential in logs without the credential itself. */
export function fingerprint(credential: string): string {
  return hashApiKey(credential).slice(0, 12);
}
