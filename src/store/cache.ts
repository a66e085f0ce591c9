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

/**
 * A cache hit made no provider request: the attempt's reservation stops counting against the
 * key's RPM. Only inside the outcome transaction that locked the job as running under the
 * attempt's own lease token (so a stale attempt cannot get here), and only the rows that attempt
 * started: its claim stamped them with the same `now()` as the job's `started_at`.
 */
export async function releaseAttemptReservation(tx: Queryable, jobId: string): Promise<void> {
  await tx.query(
    `DELETE FROM key_requests
      WHERE job_id = $1 AND started_at = (SELECT started_at FROM jobs WHERE id = $1 AND state = 'succeeded')`,
    [jobId],
  );
}
