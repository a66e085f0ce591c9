import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import zlib from 'node:zlib';
import sharp from 'sharp';
import type { Sharp } from 'sharp';
import { AppError } from '../../src/errors.ts';
import type { ErrorCode } from '../../src/errors.ts';
import { DEFAULT_IMAGE_LIMITS, validateImage } from '../../src/images/validate.ts';

function solid(width: number, height: number, background = '#3366cc'): Sharp {
  return sharp({ create: { width, height, channels: 3, background } });
}

async function twoFrames(): Promise<[Buffer, Buffer]> {
  return [await solid(32, 32, 'red').png().toBuffer(), await solid(32, 32, 'blue').png().toBuffer()];
}

/** A real PNG bomb: 1-bit greyscale, all black, 10000x10000 = 100 M pixels in about 12 KB. */
function pngBomb(side = 10_000): Buffer {
  const chunk = (type: string, body: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    const typed = Buffer.concat([Buffer.from(type, 'latin1'), body]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header[8] = 1; // bit depth
  header[9] = 0; // greyscale
  const rows = Buffer.alloc(side * (1 + Math.ceil(side / 8))); // filter byte 0 + zero pixels per row
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

async function rejectsWith(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof AppError, `expected AppError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (message) assert.match(error.message, message);
    return true;
  });
}

/** Does a TIFF/EXIF block contain the GPS IFD pointer tag (0x8825)? */
function hasGpsPointer(exif: Buffer): boolean {
  return exif.includes(Buffer.from([0x88, 0x25])) || exif.includes(Buffer.from([0x25, 0x88]));
}

describe('validateImage', () => {
  it('has the documented default limits', () => {
    assert.equal(DEFAULT_IMAGE_LIMITS.maxBytes, 20 * 1024 * 1024);
    assert.equal(DEFAULT_IMAGE_LIMITS.maxPixels, 40_000_000);
    assert.deepEqual([...DEFAULT_IMAGE_LIMITS.formats], ['jpeg', 'png', 'webp']);
  });

  for (const [format, mime] of [
    ['jpeg', 'image/jpeg'],
    ['png', 'image/png'],
    ['webp', 'image/webp'],
  ] as const) {
    it(`accepts ${format} and returns it normalized in the same format`, async () => {
      const input = await solid(64, 48).toFormat(format).toBuffer();
      const image = await validateImage(input);
      assert.equal(image.format, format);
      assert.equal(image.mime, mime);
      assert.equal(image.width, 64);
      assert.equal(image.height, 48);
      assert.equal(image.bytes, image.data.length);
      assert.equal(image.sha256, createHash('sha256').update(image.data).digest('hex'));
      const decoded = await sharp(image.data).metadata();
      assert.equal(decoded.format, format);
      assert.equal(decoded.width, 64);
      assert.equal(decoded.height, 48);
    });
  }

  it('is deterministic: the same input gives the same normalized bytes', async () => {
    const input = await solid(20, 20).jpeg().toBuffer();
    const [a, b] = await Promise.all([validateImage(input), validateImage(input)]);
    assert.equal(a.sha256, b.sha256);
  });

  it('applies EXIF orientation and drops the EXIF block', async () => {
    // Stored 40x20, left half red and right half blue; orientation 6 means "rotate 90° clockwise".
    const left = await solid(20, 20, '#ff0000').png().toBuffer();
    const input = await solid(40, 20, '#0000ff')
      .composite([{ input: left, left: 0, top: 0 }])
      .jpeg({ quality: 95 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const before = await sharp(input).metadata();
    assert.equal(before.orientation, 6);

    const image = await validateImage(input);
    assert.equal(image.width, 20);
    assert.equal(image.height, 40);
    const after = await sharp(image.data).metadata();
    assert.equal(after.orientation, undefined);
    assert.equal(after.exif, undefined);

    const { data: pixels, info } = await sharp(image.data).raw().toBuffer({ resolveWithObject: true });
    const at = (x: number, y: number): number[] => {
      const offset = (y * info.width + x) * info.channels;
      return [...pixels.subarray(offset, offset + 3)];
    };
    const [topR = 0, , topB = 0] = at(10, 5);
    const [bottomR = 0, , bottomB = 0] = at(10, 35);
    assert.ok(topR > 200 && topB < 60, `top should be red, got ${at(10, 5).join(',')}`);
    assert.ok(bottomB > 200 && bottomR < 60, `bottom should be blue, got ${at(10, 35).join(',')}`);
  });

  it('strips GPS EXIF from a JPEG', async () => {
    const input = await solid(40, 30)
      .jpeg()
      .withExif({
        IFD0: { Make: 'DarkroomCam' },
        IFD3: { GPSLatitudeRef: 'N', GPSLatitude: '51/1 30/1 0/1' },
      })
      .toBuffer();
    const before = await sharp(input).metadata();
    assert.ok(before.exif && hasGpsPointer(before.exif), 'fixture should carry GPS EXIF');
    assert.ok(input.includes('DarkroomCam'));

    const image = await validateImage(input);
    const after = await sharp(image.data).metadata();
    assert.equal(after.exif, undefined);
    assert.equal(after.xmp, undefined);
    assert.ok(!image.data.includes('DarkroomCam'));
  });

  it('drops XMP and the ICC profile', async () => {
    const xmp =
      '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' +
      '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Secret Person</dc:creator>' +
      '</rdf:Description></rdf:RDF></x:xmpmeta>';
    const input = await solid(30, 30).jpeg().withIccProfile('p3').withXmp(xmp).toBuffer();
    const before = await sharp(input).metadata();
    assert.ok(before.icc && before.xmp, 'fixture should carry ICC and XMP');

    const image = await validateImage(input);
    const after = await sharp(image.data).metadata();
    assert.equal(after.icc, undefined);
    assert.equal(after.xmp, undefined);
    assert.ok(!image.data.includes('Secret Person'));
  });

  it('strips EXIF from a WebP too', async () => {
    const input = await solid(30, 30)
      .webp()
      .withExif({ IFD0: { Make: 'DarkroomCam' } })
      .toBuffer();
    assert.ok((await sharp(input).metadata()).exif);
    const image = await validateImage(input);
    assert.equal((await sharp(image.data).metadata()).exif, undefined);
  });

  it('rejects GIF, TIFF and AVIF naming the format', async () => {
    const base = solid(16, 16);
    await rejectsWith(validateImage(await base.clone().gif().toBuffer()), 'unsupported_image', /gif/);
    await rejectsWith(validateImage(await base.clone().tiff().toBuffer()), 'unsupported_image', /tiff/);
    await rejectsWith(validateImage(await base.clone().avif().toBuffer()), 'unsupported_image', /avif/);
  });

  it('rejects SVG without rendering it', async () => {
    const svg = Buffer.from(
      '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    );
    await rejectsWith(validateImage(svg), 'unsupported_image', /svg/);
  });

  it('rejects non-image bytes and empty input', async () => {
    await rejectsWith(
      validateImage(Buffer.from('hello, this is not an image')),
      'unsupported_image',
      /not a recognised image/,
    );
    await rejectsWith(validateImage(Buffer.alloc(0)), 'unsupported_image');
  });

  it('rejects formats outside the configured allow-list', async () => {
    const jpeg = await solid(16, 16).jpeg().toBuffer();
    await rejectsWith(validateImage(jpeg, { formats: ['png'] }), 'unsupported_image', /jpeg.*allowed: png/);
  });

  it('rejects an animated WebP', async () => {
    const animated = await sharp(await twoFrames(), { join: { animated: true } })
      .webp()
      .toBuffer();
    assert.equal((await sharp(animated).metadata()).pages, 2);
    await rejectsWith(validateImage(animated), 'unsupported_image', /animated or multi-page webp/i);
  });

  it('rejects an animated GIF', async () => {
    const animated = await sharp(await twoFrames(), { join: { animated: true } })
      .gif()
      .toBuffer();
    await rejectsWith(validateImage(animated), 'unsupported_image', /gif/);
  });

  it('rejects oversize bytes before decoding', async () => {
    // Garbage bytes: a decoder would call them unsupported, so payload_too_large proves no decode happened.
    const garbage = Buffer.alloc(1024 * 1024 + 1, 0x41);
    await rejectsWith(
      validateImage(garbage, { maxBytes: 1024 * 1024 }),
      'payload_too_large',
      /1048576 bytes/,
    );
    const png = await solid(64, 64).png().toBuffer();
    const error = await validateImage(png, { maxBytes: 10 }).catch((caught: unknown) => caught);
    assert.ok(error instanceof AppError);
    assert.equal(error.httpStatus, 413);
  });

  it('rejects a decompression bomb quickly with image_too_large', async () => {
    const bomb = pngBomb();
    assert.ok(bomb.length < 100_000, `bomb is ${bomb.length} bytes`);
    const started = performance.now();
    await rejectsWith(
      validateImage(bomb),
      'image_too_large',
      /10000x10000 pixels; the limit is 40000000 pixels/,
    );
    assert.ok(performance.now() - started < 1000);
  });

  it('honours a custom pixel limit', async () => {
    const png = await solid(100, 100).png().toBuffer();
    await rejectsWith(validateImage(png, { maxPixels: 5_000 }), 'image_too_large', /5000 pixels/);
    assert.equal((await validateImage(png, { maxPixels: 10_000 })).width, 100);
  });

  it('rejects truncated and corrupt images with unsupported_image, never a raw sharp error', async () => {
    const jpeg = await solid(256, 256, '#808080')
      .composite([{ input: await solid(100, 100, '#ff8800').png().toBuffer(), left: 30, top: 30 }])
      .jpeg()
      .toBuffer();
    await rejectsWith(validateImage(jpeg.subarray(0, Math.floor(jpeg.length / 2))), 'unsupported_image');

    const png = await solid(64, 64).png().toBuffer();
    await rejectsWith(validateImage(png.subarray(0, 40)), 'unsupported_image');

    const fakePng = Buffer.concat([png.subarray(0, 8), Buffer.alloc(200, 7)]);
    await rejectsWith(validateImage(fakePng), 'unsupported_image');

    const fakeWebp = Buffer.concat([
      Buffer.from('RIFF\u0000\u0000\u0000\u0000WEBPVP8 ', 'latin1'),
      Buffer.alloc(64, 1),
    ]);
    await rejectsWith(validateImage(fakeWebp), 'unsupported_image');
  });
});
