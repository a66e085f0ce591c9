import type { Db, Queryable } from './db.ts';

/** Lets one of several API processes starting at once on an empty database create the first key. */
const FIRST_KEY_LOCK = 7_413_002;

/** API keys as stored: a public id and the SHA-256 of the key, never the key itself. */
export interface ApiKeyRow {
  id: string;
  name: string;
  scope: 'app' | 'admin';
  /** Where tasks submitted with the key go when their submit names no webhook_url. */
  webhook_url: string | null;
  created_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
}

const COLUMNS = 'id, name, scope, webhook_url, created_at, last_used_at, revoked_at';

/** Inserts a key; false when the id or hash is taken (ON CONFLICT: concurrent bootstraps). */
export async function insertApiKey(
  q: Queryable,
  key: { id: string; name: string; scope: 'app' | 'admin'; hash: string; webhookUrl?: string | null },
): Promise<boolean> {
  const { rowCount } = await q.query(
    `INSERT INTO api_keys (id, name, scope, key_hash, webhook_url) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
    [key.id, key.name, key.scope, key.hash, key.webhookUrl ?? null],
  );
  return rowCount > 0;
}

/** Inserts `key` only when no key was ever created (first start); false otherwise. */
export async function insertFirstApiKey(
  db: Db,
  key: { id: string; name: string; scope: 'app' | 'admin'; hash: string },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [FIRST_KEY_LOCK]);
    const { rows } = await tx.query<{ any: boolean }>('SELECT EXISTS (SELECT 1 FROM api_keys) AS any');
    if (rows[0]!.any) return false;
    return insertApiKey(tx, key);
  });
}

/** Sets the hash of a key with a fixed id (the DARKROOM_ADMIN_KEY row), creating or un-revoking it. */
export async function upsertApiKey(
  q: Queryable,
  key: { id: string; name: string; scope: 'app' | 'admin'; hash: string },
): Promise<void> {
  await q.query(
    `INSERT INTO api_keys (id, name, scope, key_hash) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET key_hash = EXCLUDED.key_hash, scope = EXCLUDED.scope,
                                    name = EXCLUDED.name, revoked_at = NULL`,
    [key.id, key.name, key.scope, key.hash],
  );
}

export async function findApiKeyByHash(q: Queryable, hash: string): Promise<ApiKeyRow | undefined> {
  const { rows } = await q.query<ApiKeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE key_hash = $1`, [hash]);
  return rows[0];
}

export async function getApiKey(q: Queryable, id: string): Promise<ApiKeyRow | undefined> {
  const { rows } = await q.query<ApiKeyRow>(`SELECT ${COLUMNS} FROM api_keys WHERE id = $1`, [id]);
  return rows[0];
}

export async function listApiKeys(q: Queryable): Promise<ApiKeyRow[]> {
  const { rows } = await q.query<ApiKeyRow>(`SELECT ${COLUMNS} FROM api_keys ORDER BY created_at, id`);
  return rows;
}

export async function countActiveApiKeys(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM api_keys WHERE revoked_at IS NULL',
  );
  return rows[0]?.n ?? 0;
}

/** Revokes a key; false when no active key has this id. */
export async function revokeApiKey(q: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await q.query(
    'UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
    [id],
  );
  return rowCount > 0;
}

/** Stamps last use at most once a minute per key, so a busy key does not write on every request. */
export async function touchApiKey(q: Queryable, id: string): Promise<void> {
  await q.query(
    `UPDATE api_keys SET last_used_at = now()
      WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`,
    [id],
  );
}

/** The named secret, created with `candidate` when absent; every caller gets the same value. */
export async function ensureSecret(q: Queryable, name: string, candidate: string): Promise<string> {
  await q.query('INSERT INTO auth_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [
    name,
    candidate,
  ]);
  const { rows } = await q.query<{ secret: string }>('SELECT secret FROM auth_secrets WHERE name = $1', [
    name,
  ]);
  return rows[0]!.secret;
}
