import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { synthesizeImage } from '../../src/images/synth.ts';

/** Mean absolute difference per channel value (0..255) between two same-sized images. */
async function meanDifference(a: Buffer, b: Buffer): Promise<number> {
  const [rawA, rawB] = await Promise.all([sharp(a).raw().toBuffer(), sharp(b).raw().toBuffer()]);
  assert.equal(rawA.length, rawB.length);
  let total = 0;
  for (let i = 0; i < rawA.length; i += 1) total += Math.abs((rawA[i] ?? 0) - (rawB[i] ?? 0));
  return total / rawA.length;
}

describe('synthesizeImage', () => {
  it('returns a real 512x512 PNG by default', async () => {
    const image = await synthesizeImage({ prompt: 'a red fox', index: 0, seed: 1 });
    const meta = await sharp(image).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 512);
    assert.equal(meta.height, 512);
  });

  it('honours a custom size', async () => {
    const meta = await sharp(
      await synthesizeImage({ prompt: 'x', index: 3, seed: 9, width: 96, height: 64 }),
    ).metadata();
    assert.equal(meta.width, 96);
    assert.equal(meta.height, 64);
  });

  it('is deterministic for the same inputs', async () => {
    const options = { prompt: 'a red fox', index: 12, seed: 77, width: 128, height: 128 };
    const [a, b] = await Promise.all([synthesizeImage(options), synthesizeImage({ ...options })]);
    assert.ok(a.equals(b));
  });

  it('differs visibly per prompt, index, seed and tint', async () => {
    const base = { prompt: 'a red fox', index: 1, seed: 5, width: 128, height: 128 };
    const reference = await synthesizeImage(base);
    const variants = await Promise.all([
      synthesizeImage({ ...base, prompt: 'a blue whale' }),
      synthesizeImage({ ...base, index: 2 }),
      synthesizeImage({ ...base, seed: 6 }),
      synthesizeImage({ ...base, tint: 'e3b0c44298fc1c14' }),
    ]);
    for (const variant of variants) {
      const difference = await meanDifference(reference, variant);
      assert.ok(difference > 8, `mean difference ${difference.toFixed(1)} is too small to see`);
    }
  });

  it('draws an optional label', async () => {
    const base = { prompt: 'p', index: 0, seed: 0, width: 128, height: 128 };
    const [plain, labelled] = await Promise.all([
      synthesizeImage(base),
      synthesizeImage({ ...base, label: 'beautify <&>' }),
    ]);
    assert.ok(!plain.equals(labelled));
  });

  it('rejects nonsense sizes', async () => {
    await assert.rejects(synthesizeImage({ prompt: 'p', index: 0, seed: 0, width: 0 }), RangeError);
    await assert.rejects(synthesizeImage({ prompt: 'p', index: 0, seed: 0, height: 1.5 }), RangeError);
  });

  it('renders 512x512 fast', async () => {
    await synthesizeImage({ prompt: 'warm-up', index: 0, seed: 0 });
    const runs = 10;
    const started = performance.now();
    for (let i = 0; i < runs; i += 1) await synthesizeImage({ prompt: 'speed', index: i, seed: 3 });
    const average = (performance.now() - started) / runs;
    // The target is < 30 ms; the bound is loose so a busy CI machine does not flake.
    assert.ok(average < 100, `average ${average.toFixed(1)} ms`);
  });
});
