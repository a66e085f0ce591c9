import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { AppError, coerceError } from '../errors.ts';
import { makeThumbnail } from '../images/thumbnail.ts';
import { extensionFor, resultKeys } from '../pipeline/plan-jobs.ts';
import type { Storage } from '../storage/types.ts';
import type { ImageRow } from '../store/images.ts';

const MIME_BY_EXT: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  svg: 'image/svg+xml',
};

export function mimeOfKey(key: string): string {
  return MIME_BY_EXT[key.slice(key.lastIndexOf('.') + 1).toLowerCase()] ?? 'application/octet-stream';
}

export type StoredOne =
  /** `staged`: the copy to delete once the outcome is recorded; none when it was moved into place. */
  | { kind: 'stored'; image: ImageRow; staged: string | undefined }
  | { kind: 'rejected'; index: number; message: string }
  | { kind: 'owed'; index: number; key: string; message: string };

/**
 * Stores one staged image (original + thumbnail) as image `index` of the task. With a storage
 * that moves (local), the staged file is renamed into place instead of written again; an
 * attempt that moved it and then died before its outcome committed leaves it there, so a staged
 * copy that is gone is looked for at its final key (the same bytes: the file was renamed, never
 * rewritten). The image row is recorded only after this returns, so a crash anywhere in here
 * leaves the job to run again, and running again stores the same image once (the row's key is
 * (task, index)).
 */
export async function storeOne(
  storage: Storage,
  taskId: string,
  staged: string,
  index: number,
  cached: boolean,
): Promise<StoredOne> {
  try {
    const mime = mimeOfKey(staged);
    const keys = resultKeys(taskId, index, extensionFor(mime));
    const { data, inPlace } = await readStaged(storage, staged, keys.original);
    const meta = await sharp(data).metadata();
    if (!meta.width || !meta.height || !meta.format)
      throw new AppError('unsupported_image', 'the provider returned bytes that are not an image');
    const thumb = await makeThumbnail(data);
    // At once: each is a rename or a write and an fsync, and they share the directory's fsync.
    await Promise.all([
      inPlace ? undefined : placeOriginal(storage, staged, keys.original, data, mime),
      storage.put(keys.thumbnail, thumb.data, thumb.mime),
    ]);
    const image: ImageRow = {
      task_id: taskId,
      index,
      storage_key: keys.original,
      thumb_key: keys.thumbnail,
      mime,
      width: meta.width,
      height: meta.height,
      thumb_width: thumb.width,
      thumb_height: thumb.height,
      bytes: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
      cached,
    };
    return { kind: 'stored', image, staged: storage.move ? undefined : staged };
  } catch (error) {
    const e = coerceError(error);
    // sharp refuses bytes it cannot read as an image: that image fails for good.
    if (
      (e instanceof AppError && e.code === 'unsupported_image') ||
      /unsupported image format/i.test(e.message)
    )
      return { kind: 'rejected', index, message: `image ${index}: ${e.message}` };
    return { kind: 'owed', index, key: staged, message: `storing image ${index} failed: ${e.message}` };
  }
}

/** The staged bytes, or (a storage that moves, the staged copy gone) those already moved to `original`. */
async function readStaged(
  storage: Storage,
  staged: string,
  original: string,
): Promise<{ data: Buffer; inPlace: boolean }> {
  try {
    return { data: await storage.get(staged), inPlace: false };
  } catch (error) {
    if (!storage.move || !isNotFound(error)) throw error;
    try {
      return { data: await storage.get(original), inPlace: true };
    } catch {
      throw error;
    }
  }
}

/**
 * Moves the staged copy into place, or puts a copy where the storage cannot move (its staged
 * copy is deleted after the outcome commits). A staged copy that vanished between the read and
 * the move was moved by another attempt of the same job (one whose lease ran out): it is kept
 * when the file in place holds the bytes read.
 */
async function placeOriginal(
  storage: Storage,
  staged: string,
  original: string,
  data: Buffer,
  mime: string,
): Promise<void> {
  if (!storage.move) return storage.put(original, data, mime);
  try {
    await storage.move(staged, original);
  } catch (error) {
    if (!isNotFound(error)) throw error;
    const there = await storage.get(original).catch(() => undefined);
    if (!there?.equals(data)) throw error;
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof AppError && error.code === 'file_not_found';
}
