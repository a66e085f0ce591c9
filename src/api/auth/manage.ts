import type { Queryable } from '../../store/db.ts';
import { insertApiKey, type ApiKeyRow } from '../../store/api-keys.ts';
import { generateApiKey, type KeyScope } from './keys.ts';

/** Creates an API key; the key is returned once and only its hash is stored. */
export async function createApiKey(
  q: Queryable,
  scope: KeyScope,
  name: string,
): Promise<{ id: string; key: string; scope: KeyScope; name: string }> {
  for (;;) {
    const generated = generateApiKey();
    // A clash of the 12-character public id (48 random bits) is unlikely; draw again if it happens.
    if (await insertApiKey(q, { id: generated.id, name, scope, hash: generated.hash })) {
      return { id: generated.id, key: generated.key, scope, name };
    }
  }
}

/** A key as listed: never the key, never its hash. */
export function keyView(row: ApiKeyRow) {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    created_at: row.created_at.toISOString(),
    last_used_at: row.last_used_at?.toISOString() ?? null,
    revoked_at: row.revoked_at?.toISOString() ?? null,
  };
}
