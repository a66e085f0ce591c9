import type { Queryable } from './db.ts';

export interface UploadRow {
  id: string;
  storage_key: string;
  mime: string;
  width: number;
  height: number;
  bytes: number;
  sha256: string;
  created_at: Date;
}

export async function insertUpload(q: Queryable, u: Omit<UploadRow, 'created_at'>): Promise<void> {
  await q.query(
    'INSERT INTO uploads (id, storage_key, mime, width, height, bytes, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)',
    [u.id, u.storage_key, u.mime, u.width, u.height, u.bytes, u.sha256],
  );
}

export async function getUploads(q: Queryable, ids: string[]): Promise<UploadRow[]> {
  if (ids.length === 0) return [];
  const { rows } = await q.query<UploadRow>('SELECT * FROM uploads WHERE id = ANY($1::text[])', [ids]);
  return rows;
}
