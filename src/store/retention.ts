import type { Queryable } from './db.ts';

/**
 * Retention of finished work, set-based and in batches: each call handles at most `limit` tasks
 * (or cache entries) in one statement and says how many, so the caller repeats it until a pass
 * comes back short. `now` is passed in (tests inject time); nothing here reads the clock.
 *
 * Only tasks in a final state are ever touched: every statement re-checks the state of the rows
 * it locks (FOR UPDATE SKIP LOCKED: a task some transaction holds is left for the next pass), so
 * a queued or running task, or one that changes meanwhile, is never removed. A task with a webhook
 * delivery still pending keeps everything until the delivery is done (the deliverer reads its
 * event). The credit ledger is never touched: it has no foreign key to tasks, so its rows keep the
 * id of a task that is gone, and every balance still equals the sum of its user's ledger.
 */

const OLD_FINISHED = `
  finished_at IS NOT NULL AND finished_at < $1::timestamptz - $2::float8 * interval '1 hour'
  AND state NOT IN ('queued', 'running')
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.task_id = tasks.id AND d.state = 'pending')`;

export interface PrunedDetails {
  tasks: number;
  events: number;
  jobs: number;
}

/** Drops the events and jobs of up to `limit` tasks finished more than `hours` before `now`. */
export async function pruneFinishedTaskDetails(
  q: Queryable,
  now: Date,
  hours: number,
  limit: number,
): Promise<PrunedDetails> {
  const { rows } = await q.query<PrunedDetails>(
    `WITH old AS (
       SELECT id FROM tasks
        WHERE NOT details_pruned AND ${OLD_FINISHED}
        ORDER BY finished_at LIMIT $3 FOR UPDATE SKIP LOCKED),
     ev AS (DELETE FROM events WHERE task_id IN (SELECT id FROM old) RETURNING 1),
     jb AS (DELETE FROM jobs WHERE task_id IN (SELECT id FROM old) RETURNING 1),
     marked AS (UPDATE tasks SET details_pruned = true WHERE id IN (SELECT id FROM old) RETURNING 1)
     SELECT (SELECT count(*) FROM marked)::int AS tasks, (SELECT count(*) FROM ev)::int AS events,
            (SELECT count(*) FROM jb)::int AS jobs`,
    [now, hours, limit],
  );
  return rows[0]!;
}

/**
 * Deletes up to `limit` tasks finished more than `hours` before `now`, with everything that hangs
 * off them (jobs, images and forecast by cascade; events and webhook deliveries here). The keys of
 * their images and thumbnails go to storage_garbage in the same statement.
 */
export async function deleteFinishedTasks(
  q: Queryable,
  now: Date,
  hours: number,
  limit: number,
): Promise<number> {
  const { rows } = await q.query<{ tasks: number }>(
    `WITH old AS (
       SELECT id FROM tasks WHERE ${OLD_FINISHED}
        ORDER BY finished_at LIMIT $3 FOR UPDATE SKIP LOCKED),
     files AS (
       INSERT INTO storage_garbage (storage_key)
       SELECT k FROM images i CROSS JOIN LATERAL (VALUES (i.storage_key), (i.thumb_key)) AS f (k)
        WHERE i.task_id IN (SELECT id FROM old)
       ON CONFLICT (storage_key) DO NOTHING RETURNING 1),
     ev AS (DELETE FROM events WHERE task_id IN (SELECT id FROM old) RETURNING 1),
     wd AS (DELETE FROM webhook_deliveries WHERE task_id IN (SELECT id FROM old) RETURNING 1),
     gone AS (DELETE FROM tasks WHERE id IN (SELECT id FROM old) RETURNING 1)
     SELECT (SELECT count(*) FROM gone)::int AS tasks, (SELECT count(*) FROM files)::int AS files,
            (SELECT count(*) FROM ev)::int AS events, (SELECT count(*) FROM wd)::int AS deliveries`,
    [now, hours, limit],
  );
  return rows[0]!.tasks;
}

/** Deletes up to `limit` result cache entries made more than `hours` before `now`; their files go to storage_garbage. */
export async function pruneResultCache(
  q: Queryable,
  now: Date,
  hours: number,
  limit: number,
): Promise<number> {
  const { rows } = await q.query<{ entries: number }>(
    `WITH old AS (
       SELECT cache_key FROM result_cache
        WHERE created_at < $1::timestamptz - $2::float8 * interval '1 hour'
        ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED),
     gone AS (DELETE FROM result_cache WHERE cache_key IN (SELECT cache_key FROM old) RETURNING storage_keys),
     files AS (
       INSERT INTO storage_garbage (storage_key)
       SELECT jsonb_array_elements_text(storage_keys) FROM gone
       ON CONFLICT (storage_key) DO NOTHING RETURNING 1)
     SELECT (SELECT count(*) FROM gone)::int AS entries, (SELECT count(*) FROM files)::int AS files`,
    [now, hours, limit],
  );
  return rows[0]!.entries;
}

/** Up to `limit` storage keys whose rows are gone and whose files are still to be removed. */
export async function storageGarbage(q: Queryable, limit: number): Promise<string[]> {
  const { rows } = await q.query<{ storage_key: string }>(
    'SELECT storage_key FROM storage_garbage ORDER BY created_at, storage_key LIMIT $1',
    [limit],
  );
  return rows.map((r) => r.storage_key);
}

/** Forgets storage keys whose files were removed. */
export async function forgetGarbage(q: Queryable, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await q.query('DELETE FROM storage_garbage WHERE storage_key = ANY($1::text[])', [keys]);
}
