import type { Queryable } from './db.ts';

export interface UploadRow {
  id: string;
  storage_key: string;
  mime: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  /** The user whose token uploaded it; null when an app or admin key did. */
  user_id: string | null;
  created_at: Date;
}

export async function insertUpload(
  q: Queryable,
  u: Omit<UploadRow, 'created_at' | 'user_id'> & { user_id?: string | null },
): Promise<void> {
  await q.query(
    'INSERT INTO uploads (id, storage_key, mime, width, height, bytes, sha256, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
    [u.id, u.storage_key, u.mime, u.width, u.height, u.bytes, u.sha256, u.user_id ?? null],
  );
}

export async function getUploads(q: Queryable, ids: string[]): Promise<UploadRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await q.query<UploadRow>('SELECT * FROM uploads WHERE id = ANY($1::text[])', [ids]);
  return rows;
}

/**
 * Uploads older than `hours` that no queued or running task uses. Tasks that ended keep only
 * their results; queued and running tasks are never touched by retention.
 */
export async function findExpiredUploads(
  q: Queryable,
  hours: number,
  limit: number,
): Promise<Array<{ id: string; storage_key: string }>> {
  const { rows } = await q.query<{ id: string; storage_key: string }>(
    `SELECT u.id, u.storage_key FROM uploads u
      WHERE u.created_at < now() - $1::int * interval '1 hour'
        AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.state IN ('queued', 'running')
                          AND t.inputs @> jsonb_build_array(jsonb_build_object('upload_id', u.id)))
      ORDER BY u.created_at LIMIT $2`,
    [hours, limit],
  );
  return rows;
}

export async function deleteUpload(q: Queryable, id: string): Promise<void> {
  await q.query('DELETE FROM uploads WHERE id = $1', [id]);
}
