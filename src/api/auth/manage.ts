import type { Queryable } from '../../store/db.ts';
import { insertApiKey, type ApiKeyRow } from '../../store/api-keys.ts';
import { generateApiKey, type KeyScope } from './keys.ts';

/**
 * Creates an API key; the key is returned once and only its hash is stored. `webhookUrl`: the
 * key's default task webhook, already checked by the caller (src/webhooks/url-policy.ts).
 */
export async function createApiKey(
  q: Queryable,
  scope: KeyScope,
  name: string,
  options: { webhookUrl?: string | undefined } = {},
): Promise<{ id: string; key: string; scope: KeyScope; name: string; webhook_url: string | null }> {
  const webhookUrl = options.webhookUrl ?? null;
  for (;;) {
    const generated = generateApiKey();
    // A clash of the 12-character public id (48 random bits) is unlikely; draw again if it happens.
    if (await insertApiKey(q, { id: generated.id, name, scope, hash: generated.hash, webhookUrl })) {
      return { id: generated.id, key: generated.key, scope, name, webhook_url: webhookUrl };
    }
  }
}

/** A key as listed: never the key, never its hash. */
export function keyView(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    webhook_url: row.webhook_url,
    created_at: row.created_at.toISOString(),
    last_used_at: row.last_used_at?.toISOString() ?? null,
    revoked_at: row.revoked_at?.toISOString() ?? null,
  };
}
