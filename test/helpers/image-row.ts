import type { ImageRow } from '../../src/store/images.ts';

/** A stored image's row as a store job records it (64×64 PNG and its thumbnail), for outcome tests. */
export function storedImageRow(taskId: string, index: number): ImageRow {
  return {
    task_id: taskId,
    index,
    storage_key: `results/${taskId}/${index}.png`,
    thumb_key: `results/${taskId}/${index}.thumb.webp`,
    mime: 'image/png',
    width: 64,
    height: 64,
    thumb_width: 64,
    thumb_height: 64,
    bytes: 100,
    sha256: 'x'.repeat(64),
    cached: false,
  };
}
