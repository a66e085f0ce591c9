import sharp from 'sharp';
import { AppError } from '../errors.ts';
import { DEFAULT_IMAGE_LIMITS } from './validate.ts';

export interface Thumbnail {
  data: Buffer;
  mime: 'image/webp';
  width: number;
  height: number;
}

/** A WebP that fits inside maxSide x maxSide, keeping the aspect ratio and never enlarging. */
export async function makeThumbnail(data: Buffer, maxSide = 256): Promise<Thumbnail> {
  if (!Number.isInteger(maxSide) || maxSide < 1) {
    throw new RangeError(`maxSide must be a positive integer, got ${maxSide}`);
  }
  try {
    const { data: thumb, info } = await sharp(data, {
      limitInputPixels: DEFAULT_IMAGE_LIMITS.maxPixels,
      failOn: 'error',
    })
      .rotate()
      .resize(maxSide, maxSide, { fit: 'inside', withoutEnlargement: true })
      .webp({ quality: 80 })
      .toBuffer({ resolveWithObject: true });
    return { data: thumb, mime: 'image/webp', width: info.width, height: info.height };
  } catch (error) {
    throw new AppError('unsupported_image', 'Could not make a thumbnail: the image is unreadable.', {
      cause: error,
    });
  }
}
