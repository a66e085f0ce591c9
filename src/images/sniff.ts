/**
 * Identifies an image container from its first bytes, without any decoder.
 *
 * validateImage sniffs before handing bytes to sharp, so formats darkroom refuses (SVG,
 * TIFF, HEIF, ...) never reach their parsers at all; the name also makes the rejection
 * message say what was actually uploaded.
 */

export type SniffedFormat =
  'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'heif' | 'avif' | 'jxl' | 'jp2' | 'bmp' | 'ico' | 'pdf' | 'svg';

function startsWith(data: Buffer, bytes: readonly number[], offset = 0): boolean {
  if (data.length < offset + bytes.length) return false;
  return bytes.every((byte, i) => data[offset + i] === byte);
}

function ascii(data: Buffer, start: number, end: number): string {
  return data.subarray(start, end).toString('latin1');
}

const HEIF_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'mif1', 'msf1']);
const AVIF_BRANDS = new Set(['avif', 'avis']);

export function sniffImageFormat(data: Buffer): SniffedFormat | undefined {
  if (startsWith(data, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(data, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (ascii(data, 0, 4) === 'RIFF' && ascii(data, 8, 12) === 'WEBP') return 'webp';
  if (ascii(data, 0, 6) === 'GIF87a' || ascii(data, 0, 6) === 'GIF89a') return 'gif';
  if (startsWith(data, [0x49, 0x49, 0x2a, 0x00]) || startsWith(data, [0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (ascii(data, 4, 8) === 'ftyp') {
    const brand = ascii(data, 8, 12);
    if (AVIF_BRANDS.has(brand)) return 'avif';
    if (HEIF_BRANDS.has(brand)) return 'heif';
  }
  if (startsWith(data, [0xff, 0x0a]) || startsWith(data, [0, 0, 0, 0x0c, 0x4a, 0x58, 0x4c, 0x20]))
    return 'jxl';
  if (startsWith(data, [0, 0, 0, 0x0c, 0x6a, 0x50, 0x20, 0x20])) return 'jp2';
  if (ascii(data, 0, 2) === 'BM') return 'bmp';
  if (startsWith(data, [0, 0, 1, 0])) return 'ico';
  if (ascii(data, 0, 5) === '%PDF-') return 'pdf';
  if (looksLikeSvg(data)) return 'svg';
  return undefined;
}

function looksLikeSvg(data: Buffer): boolean {
  const head = ascii(data, 0, 1024).trimStart().toLowerCase();
  return head.startsWith('<') && head.includes('<svg');
}
