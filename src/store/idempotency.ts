import type { Queryable } from './db.ts';

export interface StoredResponse {
  request_hash: string;
  status_code: number;
  response: unknown;
}

/**
 * Holds the key for the rest of the transaction; false when another request with the same
 * key is being processed right now.
 */
export async function tryLockIdempotencyKey(tx: Queryable, key: string): Promise<boolean> {
  const { rows } = await tx.query<{ locked: boolean }>(
    `SELECT pg_try_advisory_xact_lock(hashtextextended('darkroom:idempotency:' || $1, 0)) AS locked`,
    [key],
  );
  return rows[0]?.locked === true;
}

export async function findIdempotentResponse(
  tx: Queryable,
  key: string,
): Promise<StoredResponse | undefined> {
  const { rows } = await tx.query<StoredResponse>(
    'SELECT request_hash, status_code, response FROM idempotency_keys WHERE key = $1',
    [key],
  );
  return rows[0];
}

export async function saveIdempotentResponse(
  tx: Queryable,
  key: string,
  hash: string,
  status: number,
  response: unknown,
): Promise<void> {
  await tx.query(
    'INSERT INTO idempotency_keys (key, request_hash, status_code, response) VALUES ($1, $2, $3, $4::jsonb)',
    [key, hash, status, JSON.stringify(response)],
  );
}

/** Forgets keys older than `hours`: a retry that late is a new request. */
export async function pruneIdempotencyKeys(q: Queryable, hours: number): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM idempotency_keys WHERE created_at < now() - $1::int * interval '1 hour'`,
    [hours],
  );
  return rowCount;
}
