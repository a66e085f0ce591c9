import { createHmac, timingSafeEqual } from 'node:crypto';
import { AppError } from '../errors.ts';

/** Where darkroom's own HTTP server serves local-storage files. */
export const FILE_ROUTE_PREFIX = '/v1/files/';

const KEY_CHARS = /^[A-Za-z0-9._/-]+$/;
const MAX_KEY_LENGTH = 1024;

/** The reason `key` is not a valid storage key, or undefined when it is valid. */
export function storageKeyProblem(key: string): string | undefined {
  if (key.length === 0) return 'is empty';
  if (key.length > MAX_KEY_LENGTH) return `is longer than ${MAX_KEY_LENGTH} characters`;
  if (!KEY_CHARS.test(key)) return 'may contain only A-Z a-z 0-9 . _ / -';
  if (key.startsWith('/')) return 'must be relative (it starts with /)';
  for (const segment of key.split('/')) {
    if (segment === '') return 'has an empty path segment';
    if (segment === '.' || segment === '..') return `has a "${segment}" path segment`;
  }
  return undefined;
}

/** Throws AppError('invalid_input') unless `key` is a safe, relative, slash-separated key. */
export function assertValidStorageKey(key: string): void {
  const problem = storageKeyProblem(key);
  if (problem !== undefined) {
    throw new AppError(
      'invalid_input',
      `Invalid storage key ${JSON.stringify(key.slice(0, 200))}: it ${problem}`,
    );
  }
}

/** Hex HMAC-SHA256 over key and expiry; the newline keeps ("a1", 23) and ("a12", 3) apart. */
export function fileSignature(key: string, expiresAtSeconds: number, secret: string): string {
  return createHmac('sha256', secret).update(`${key}\n${expiresAtSeconds}`).digest('hex');
}

/** `/v1/files/<key>?exp=<unix seconds>&sig=<hex hmac>`, valid until `expiresAtSeconds`. */
export function signFileUrl(key: string, expiresAtSeconds: number, secret: string): string {
  assertValidStorageKey(key);
  if (!Number.isSafeInteger(expiresAtSeconds) || expiresAtSeconds < 0) {
    throw new AppError('invalid_input', 'A file URL expiry must be a non-negative whole number of seconds');
  }
  const sig = fileSignature(key, expiresAtSeconds, secret);
  return `${FILE_ROUTE_PREFIX}${key}?exp=${expiresAtSeconds}&sig=${sig}`;
}

/**
 * True when `sig` was made by signFileUrl for this key and expiry with this secret, and the
 * expiry has not passed at `nowSeconds`. `exp` and `sig` may come straight from a query string.
 */
export function verifyFileSignature(
  key: string,
  exp: string | number,
  sig: string,
  secret: string,
  nowSeconds: number,
): boolean {
  if (storageKeyProblem(key) !== undefined) return false;
  const expText = String(exp);
  if (!/^\d{1,15}$/.test(expText)) return false;
  const expiresAtSeconds = Number(expText);
  if (expiresAtSeconds < nowSeconds) return false;
  if (!/^[0-9a-f]{64}$/i.test(sig)) return false;
  const expected = Buffer.from(fileSignature(key, expiresAtSeconds, secret), 'hex');
  return timingSafeEqual(expected, Buffer.from(sig, 'hex'));
}

/** Throws AppError('invalid_input') unless `seconds` is a usable URL lifetime. */
export function assertPositiveSeconds(seconds: number): void {
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new AppError(
      'invalid_input',
      `A URL lifetime must be a positive number of seconds, got ${seconds}`,
    );
  }
}
