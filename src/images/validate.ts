/**
 * The gate every uploaded or fetched input image passes before darkroom stores it or sends
 * it to a provider: size caps, format allow-list, single page only, and a re-encode that
 * applies EXIF orientation and drops all metadata (GPS, camera serials, ...).
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import type { Metadata, OutputInfo, Sharp } from 'sharp';
import { AppError } from '../errors.ts';
import { sniffImageFormat } from './sniff.ts';

export type ImageFormat = 'jpeg' | 'png' | 'webp';

export const IMAGE_MIME_TYPES: Readonly<Record<ImageFormat, string>> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
};

export interface ImageLimits {
  maxBytes: number;
  maxPixels: number;
  formats: readonly ImageFormat[];
}

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxBytes: 20 * 1024 * 1024,
  maxPixels: 40_000_000,
  formats: Object.freeze(['jpeg', 'png', 'webp'] as const),
});

export interface ValidatedImage {
  /** The normalized image: orientation applied, metadata stripped, same format as the input. */
  data: Buffer;
  mime: string;
  format: ImageFormat;
  width: number;
  height: number;
  bytes: number;
  /** Hex SHA-256 of `data`. */
  sha256: string;
}

// 'error' also covers truncated input; 'warning' would refuse many real-world camera JPEGs.
const FAIL_ON = 'error';

export async function validateImage(data: Buffer, opts: Partial<ImageLimits> = {}): Promise<ValidatedImage> {
  const limits = resolveLimits(opts);

  if (data.length === 0) throw new AppError('unsupported_image', 'The image is empty.');
  if (data.length > limits.maxBytes) {
    throw new AppError(
      'payload_too_large',
      `The image is ${data.length} bytes; the limit is ${limits.maxBytes} bytes${mibSuffix(limits.maxBytes)}.`,
      { details: { bytes: data.length, maxBytes: limits.maxBytes } },
    );
  }

  const format = allowedFormat(data, limits.formats);
  const metadata = await readMetadata(data);
  checkMetadata(metadata, format, limits);

  const { data: normalized, info } = await reencode(data, format, limits.maxPixels);
  return {
    data: normalized,
    mime: IMAGE_MIME_TYPES[format],
    format,
    width: info.width,
    height: info.height,
    bytes: normalized.length,
    sha256: createHash('sha256').update(normalized).digest('hex'),
  };
}

function resolveLimits(opts: Partial<ImageLimits>): ImageLimits {
  return {
    maxBytes: opts.maxBytes ?? DEFAULT_IMAGE_LIMITS.maxBytes,
    maxPixels: opts.maxPixels ?? DEFAULT_IMAGE_LIMITS.maxPixels,
    formats: opts.formats ?? DEFAULT_IMAGE_LIMITS.formats,
  };
}

function mibSuffix(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib >= 1 ? ` (${Math.round(mib * 100) / 100} MiB)` : '';
}

function allowedFormat(data: Buffer, formats: readonly ImageFormat[]): ImageFormat {
  const sniffed = sniffImageFormat(data);
  const allowed = formats.join(', ');
  if (sniffed === undefined) {
    throw new AppError(
      'unsupported_image',
      `The data is not a recognised image; allowed formats: ${allowed}.`,
    );
  }
  // The config is typed, but a value read from YAML could still name a format we cannot re-encode.
  const match = formats.find((format) => format === sniffed && Object.hasOwn(IMAGE_MIME_TYPES, format));
  if (match === undefined) {
    throw new AppError(
      'unsupported_image',
      `Images in ${sniffed} format are not supported; allowed: ${allowed}.`,
      {
        details: { format: sniffed, allowed: [...formats] },
      },
    );
  }
  return match;
}

/** Header only: no pixels are decoded here, so the pixel cap is checked before any allocation. */
async function readMetadata(data: Buffer): Promise<Metadata> {
  try {
    return await sharp(data, { limitInputPixels: false, failOn: FAIL_ON }).metadata();
  } catch (error) {
    throw new AppError('unsupported_image', 'The image header is corrupt or unreadable.', { cause: error });
  }
}

function checkMetadata(metadata: Metadata, format: ImageFormat, limits: ImageLimits): void {
  if (metadata.format !== format) {
    const detected = metadata.format === undefined ? 'unknown' : String(metadata.format);
    throw new AppError(
      'unsupported_image',
      `The image looks like ${format} but decodes as ${detected}; allowed: ${limits.formats.join(', ')}.`,
      { details: { format: detected } },
    );
  }
  if ((metadata.pages ?? 1) > 1) {
    throw new AppError('unsupported_image', `Animated or multi-page ${format} images are not supported.`, {
      details: { format, pages: metadata.pages },
    });
  }
  const { width, height } = metadata;
  if (!width || !height) {
    throw new AppError('unsupported_image', `The ${format} image has no dimensions.`);
  }
  if (width * height > limits.maxPixels) {
    throw imageTooLarge(limits.maxPixels, { width, height });
  }
}

function imageTooLarge(
  maxPixels: number,
  size?: { width: number; height: number },
  cause?: unknown,
): AppError {
  const what = size ? `The image is ${size.width}x${size.height} pixels` : 'The image has too many pixels';
  return new AppError('image_too_large', `${what}; the limit is ${maxPixels} pixels.`, {
    cause,
    details: { ...size, maxPixels },
  });
}

async function reencode(
  data: Buffer,
  format: ImageFormat,
  maxPixels: number,
): Promise<{ data: Buffer; info: OutputInfo }> {
  // sharp writes no metadata unless asked (keepMetadata/withMetadata), so this strips EXIF, GPS, XMP, ICC.
  const pipeline = sharp(data, { limitInputPixels: maxPixels, failOn: FAIL_ON }).rotate();
  try {
    return await encodeAs(pipeline, format).toBuffer({ resolveWithObject: true });
  } catch (error) {
    // Second line of defence: the header check above already refuses oversized images.
    if (error instanceof Error && /pixel limit/i.test(error.message)) {
      throw imageTooLarge(maxPixels, undefined, error);
    }
    throw new AppError('unsupported_image', `The ${format} image data is corrupt or truncated.`, {
      cause: error,
    });
  }
}

function encodeAs(pipeline: Sharp, format: ImageFormat): Sharp {
  switch (format) {
    case 'jpeg':
      return pipeline.jpeg({ quality: 90 });
    case 'png':
      return pipeline.png();
    case 'webp':
      return pipeline.webp({ quality: 90 });
  }
}
