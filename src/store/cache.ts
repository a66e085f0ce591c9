import type { Queryable } from './db.ts';

export async function findCachedResult(q: Queryable, cacheKey: string): Promise<string[] | undefined> {
  const { rows } = await q.query<{ storage_keys: string[] }>(
    'SELECT storage_keys FROM result_cache WHERE cache_key = $1',
    [cacheKey],
  );
  return rows[0]?.storage_keys;
}

export async function saveCachedResult(q: Queryable, cacheKey: string, storageKeys: string[]): Promise<void> {
  await q.query(
    'INSERT INTO result_cache (cache_key, storage_keys) VALUES ($1, $2::jsonb) ON CONFLICT (cache_key) DO NOTHING',
    [cacheKey, JSON.stringify(storageKeys)],
  );
}

/** A cache hit made no provider request: its reservation stops counting against the key's RPM. */
export async function releaseKeyReservation(q: Queryable, jobId: string): Promise<void> {
  await q.query(
    'DELETE FROM key_requests WHERE job_id = $1 AND id = (SELECT max(id) FROM key_requests WHERE job_id = $1)',
    [jobId],
  );
}
