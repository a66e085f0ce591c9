/**
 * Synthetic result images for the simulated provider: real PNGs that differ visibly per
 * (prompt, index, seed) and are identical for identical inputs.
 *
 * The picture is a single SVG (gradient, shapes, the output index in seven-segment digits)
 * rendered by sharp. The index is drawn with rectangles rather than <text> so rendering
 * needs no fonts: no fontconfig start-up cost and no dependence on installed fonts.
 */
import { createHash } from 'node:crypto';
import sharp from 'sharp';
import { mulberry32 } from './prng.ts';

export interface SynthOptions {
  prompt: string;
  /** Output index within the task; drawn on the image. */
  index: number;
  seed: number;
  width?: number;
  height?: number;
  /** Optional caption drawn across the top (rendered as SVG text, so it uses system fonts). */
  label?: string;
  /** Extra material mixed into the picture, e.g. an input image's sha256, so outputs depend on it. */
  tint?: string;
}

const MAX_SIDE = 4096;

export async function synthesizeImage(opts: SynthOptions): Promise<Buffer> {
  const width = checkSide('width', opts.width ?? 512);
  const height = checkSide('height', opts.height ?? 512);
  const svg = synthSvg({ ...opts, width, height });
  return sharp(Buffer.from(svg)).png({ compressionLevel: 3 }).toBuffer();
}

function checkSide(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_SIDE) {
    throw new RangeError(`${name} must be an integer between 1 and ${MAX_SIDE}, got ${value}`);
  }
  return value;
}

/** The SVG source of a synthetic image; exported for tests and debugging. */
export function synthSvg(opts: SynthOptions & { width: number; height: number }): string {
  const { width, height, index } = opts;
  const digest = createHash('sha256')
    .update(`${opts.prompt}\u0000${index}\u0000${opts.seed}\u0000${opts.tint ?? ''}`)
    .digest();
  const random = mulberry32(digest.readUInt32LE(0));
  const hue = (): number => Math.floor(random() * 360);

  const parts: string[] = [];
  const angle = Math.floor(random() * 360);
  parts.push(
    `<defs><linearGradient id="bg" gradientTransform="rotate(${angle} 0.5 0.5)">` +
      `<stop offset="0" stop-color="hsl(${hue()},70%,45%)"/>` +
      `<stop offset="1" stop-color="hsl(${hue()},70%,25%)"/></linearGradient></defs>`,
    `<rect width="${width}" height="${height}" fill="url(#bg)"/>`,
  );

  const side = Math.min(width, height);
  const shapes = 4 + Math.floor(random() * 4);
  for (let i = 0; i < shapes; i += 1) {
    const fill = `hsl(${hue()},80%,${40 + Math.floor(random() * 40)}%)`;
    const opacity = fmt(0.35 + random() * 0.5);
    const x = random() * width;
    const y = random() * height;
    const size = side * (0.08 + random() * 0.3);
    parts.push(
      random() < 0.5
        ? `<circle cx="${fmt(x)}" cy="${fmt(y)}" r="${fmt(size / 2)}" fill="${fill}" fill-opacity="${opacity}"/>`
        : `<rect x="${fmt(x - size / 2)}" y="${fmt(y - size / 2)}" width="${fmt(size)}" height="${fmt(size * (0.5 + random()))}" ` +
            `transform="rotate(${Math.floor(random() * 90)} ${fmt(x)} ${fmt(y)})" fill="${fill}" fill-opacity="${opacity}"/>`,
    );
  }

  if (opts.tint !== undefined && opts.tint !== '') {
    const frame = Math.max(1, side * 0.03);
    parts.push(
      `<rect x="${fmt(frame / 2)}" y="${fmt(frame / 2)}" width="${fmt(width - frame)}" height="${fmt(height - frame)}" ` +
        `fill="none" stroke="hsl(${hue()},90%,60%)" stroke-width="${fmt(frame)}"/>`,
    );
  }

  parts.push(indexBadge(index, width, height));
  if (opts.label !== undefined && opts.label !== '') {
    const size = Math.max(6, side * 0.07);
    parts.push(
      `<text x="${fmt(side * 0.05)}" y="${fmt(side * 0.05 + size)}" font-family="sans-serif" font-size="${fmt(size)}" ` +
        `fill="#fff" stroke="#000" stroke-width="${fmt(size / 20)}">${escapeXml(opts.label)}</text>`,
    );
  }

  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${parts.join('')}</svg>`;
}

// Segments a..g of a seven-segment display, lit per digit.
const DIGIT_SEGMENTS: readonly string[] = [
  'abcdef',
  'bc',
  'abdeg',
  'abcdg',
  'bcfg',
  'acdfg',
  'acdefg',
  'abc',
  'abcdefg',
  'abcdfg',
];

function indexBadge(index: number, width: number, height: number): string {
  const digits = String(Math.abs(Math.trunc(index)));
  const side = Math.min(width, height);
  // Shrink long indexes so the badge stays inside the image.
  const digitHeight = Math.min(side * 0.16, (width * 0.92) / (0.7 * digits.length + 0.25));
  const digitWidth = digitHeight * 0.55;
  const gap = digitHeight * 0.15;
  const pad = digitHeight * 0.2;
  const boxWidth = digits.length * digitWidth + (digits.length - 1) * gap + 2 * pad;
  const boxHeight = digitHeight + 2 * pad;
  const boxX = side * 0.04;
  const boxY = height - side * 0.04 - boxHeight;

  const segments: string[] = [];
  [...digits].forEach((char, position) => {
    const x = boxX + pad + position * (digitWidth + gap);
    segments.push(...digitRects(Number(char), x, boxY + pad, digitWidth, digitHeight).map(rectSvg));
  });
  return (
    `<rect x="${fmt(boxX)}" y="${fmt(boxY)}" width="${fmt(boxWidth)}" height="${fmt(boxHeight)}" ` +
    `rx="${fmt(pad)}" fill="#000" fill-opacity="0.6"/><g fill="#fff">${segments.join('')}</g>`
  );
}

type Rect = [x: number, y: number, w: number, h: number];

function rectSvg([x, y, w, h]: Rect): string {
  return `<rect x="${fmt(x)}" y="${fmt(y)}" width="${fmt(w)}" height="${fmt(h)}"/>`;
}

/** One decimal place keeps the SVG short; the renderer cannot show finer detail anyway. */
function fmt(value: number): string {
  return (Math.round(value * 10) / 10).toString();
}

function digitRects(digit: number, x: number, y: number, w: number, h: number): Rect[] {
  const t = h * 0.12;
  const half = h / 2;
  const all: Record<string, Rect> = {
    a: [x, y, w, t],
    b: [x + w - t, y, t, half],
    c: [x + w - t, y + half, t, half],
    d: [x, y + h - t, w, t],
    e: [x, y + half, t, half],
    f: [x, y, t, half],
    g: [x, y + half - t / 2, w, t],
  };
  const lit = DIGIT_SEGMENTS[digit] ?? '';
  return [...lit].map((segment) => all[segment]).filter((rect): rect is Rect => rect !== undefined);
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
