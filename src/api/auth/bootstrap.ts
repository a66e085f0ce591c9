import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Context } from '../../context.ts';
import { ensureSecret, insertFirstApiKey, upsertApiKey } from '../../store/api-keys.ts';
import { generateApiKey, hashApiKey } from './keys.ts';

export const ENV_ADMIN_KEY_ID = 'env-admin';

/** The user-token HMAC secret: `auth.tokenSecret`, else one generated once and kept in the database. */
export async function tokenSecretOf(ctx: Pick<Context, 'db' | 'config'>): Promise<Uint8Array> {
  const configured = ctx.config.auth.tokenSecret;
  const secret =
    configured ?? (await ensureSecret(ctx.db, 'user_tokens', randomBytes(32).toString('base64url')));
  return new TextEncoder().encode(secret);
}

export function adminKeyFile(home: string): string {
  return path.join(home, 'admin-key');
}

/**
 * At start-up of an API process: `DARKROOM_ADMIN_KEY` (auth.adminKey) is made an admin key;
 * without it, the very first start (no key ever created) creates an admin key, keeps it in
 * `<home>/admin-key` (mode 0600) and returns it so it can be printed once.
 */
export async function bootstrapKeys(
  ctx: Pick<Context, 'db' | 'config'>,
): Promise<{ key: string; file: string } | undefined> {
  const { auth, home } = ctx.config;
  if (auth.adminKey) {
    await upsertApiKey(ctx.db, {
      id: ENV_ADMIN_KEY_ID,
      name: 'DARKROOM_ADMIN_KEY',
      scope: 'admin',
      hash: hashApiKey(auth.adminKey),
    });
    return undefined;
  }
  if (!auth.enabled) return undefined;
  const generated = generateApiKey();
  const created = await insertFirstApiKey(ctx.db, {
    id: generated.id,
    name: 'first admin key',
    scope: 'admin',
    hash: generated.hash,
  });
  if (!created) return undefined;
  const file = adminKeyFile(home);
  mkdirSync(home, { recursive: true });
  writeFileSync(file, `${generated.key}\n`, { mode: 0o600 });
  return { key: generated.key, file };
}
