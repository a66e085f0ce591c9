import { synthesizeImage } from '../../images/synth.ts';

export interface FakeImageRequest {
  prompt: string;
  index: number;
  seed: number;
  width: number;
  height: number;
}

/** Largest side the simulator renders; bigger requests are clamped (ComfyUI) or refused (OpenAI `size`). */
export const MAX_FAKE_SIDE = 4096;

/** A real PNG that differs per (prompt, index, seed) and is identical for identical requests. */
export function renderFakePng(request: FakeImageRequest): Promise<Buffer> {
  return synthesizeImage(request);
}

/** Bytes that look like a response body but decode as no image format. */
export function notAnImage(): Buffer {
  return Buffer.from('<html><body>this is not an image</body></html>\n'.repeat(8));
}
