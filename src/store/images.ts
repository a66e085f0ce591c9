import type { Queryable } from './db.ts';

export interface ImageRow {
  task_id: string;
  index: number;
  storage_key: string;
  thumb_key: string;
  mime: string;
  width: number;
  height: number;
  thumb_width: number;
  thumb_height: number;
  bytes: number;
  sha256: string;
  cached: boolean;
}

/** Records a stored image; false when the index already had one (a duplicate attempt). */
export async function insertImage(tx: Queryable, i: ImageRow): Promise<boolean> {
  const { rowCount } = await tx.query(
    `INSERT INTO images (task_id, index, storage_key, thumb_key, mime, width, height, thumb_width, thumb_height, bytes, sha256, cached)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (task_id, index) DO NOTHING`,
    [
      i.task_id,
      i.index,
      i.storage_key,
      i.thumb_key,
      i.mime,
      i.width,
      i.height,
      i.thumb_width,
      i.thumb_height,
      i.bytes,
      i.sha256,
      i.cached,
    ],
  );
  return rowCount > 0;
}

/**
 * Records a store job's images in one statement; returns how many were new (an index that
 * already had an image, from an earlier attempt, is left as it was and not counted).
 */
export async function insertImages(tx: Queryable, images: ImageRow[]): Promise<number> {
  if (images.length === 0) return 0;
  const { rowCount } = await tx.query(
    `INSERT INTO images (task_id, index, storage_key, thumb_key, mime, width, height, thumb_width, thumb_height, bytes, sha256, cached)
     SELECT x.task_id, x.index, x.storage_key, x.thumb_key, x.mime, x.width, x.height, x.thumb_width, x.thumb_height,
            x.bytes, x.sha256, x.cached
       FROM jsonb_to_recordset($1::jsonb) AS x(task_id text, index int, storage_key text, thumb_key text, mime text,
            width int, height int, thumb_width int, thumb_height int, bytes int, sha256 text, cached boolean)
     ORDER BY x.index
     ON CONFLICT (task_id, index) DO NOTHING`,
    [JSON.stringify(images)],
  );
  return rowCount;
}

export async function imagesOfTask(q: Queryable, taskId: string): Promise<ImageRow[]> {
  const { rows } = await q.query<ImageRow>('SELECT * FROM images WHERE task_id = $1 ORDER BY index', [
    taskId,
  ]);
  return rows;
}

/** The indices of a task's stored images (its delivered ones). */
export async function imageIndices(q: Queryable, taskId: string): Promise<number[]> {
  const { rows } = await q.query<{ index: number }>(
    'SELECT index FROM images WHERE task_id = $1 ORDER BY index',
    [taskId],
  );
  return rows.map((r) => r.index);
}
