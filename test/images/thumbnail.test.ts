import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { AppError } from '../../src/errors.ts';
import { makeThumbnail } from '../../src/images/thumbnail.ts';

function png(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: '#884422' } })
    .png()
    .toBuffer();
}

describe('makeThumbnail', () => {
  it('fits a landscape image inside 256x256 as WebP', async () => {
    const thumb = await makeThumbnail(await png(1024, 512));
    assert.equal(thumb.mime, 'image/webp');
    assert.equal(thumb.width, 256);
    assert.equal(thumb.height, 128);
    const meta = await sharp(thumb.data).metadata();
    assert.equal(meta.format, 'webp');
    assert.equal(meta.width, 256);
    assert.equal(meta.height, 128);
  });

  it('fits a portrait image inside a custom box', async () => {
    const thumb = await makeThumbnail(await png(300, 900), 90);
    assert.equal(thumb.width, 30);
    assert.equal(thumb.height, 90);
  });

  it('never enlarges a small image', async () => {
    const thumb = await makeThumbnail(await png(40, 20));
    assert.equal(thumb.width, 40);
    assert.equal(thumb.height, 20);
  });

  it('applies EXIF orientation', async () => {
    const input = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#123456' } })
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const thumb = await makeThumbnail(input, 100);
    assert.equal(thumb.width, 50);
    assert.equal(thumb.height, 100);
  });

  it('reports unreadable input as an AppError', async () => {
    await assert.rejects(
      makeThumbnail(Buffer.from('not an image')),
      (error: unknown) => error instanceof AppError && error.code === 'unsupported_image',
    );
  });
});
