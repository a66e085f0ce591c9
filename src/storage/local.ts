import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.ts';
import { assertPositiveSeconds, assertValidStorageKey, signFileUrl } from './signing.ts';
import type { Storage } from './types.ts';

export interface LocalStorageOptions {
  /** Directory holding the files; created on first write. */
  dir: string;
  /** Secret for the HMAC in file URLs; the API verifies it with verifyFileSignature. */
  signingSecret: string;
  /** Clock for URL expiry, in milliseconds; tests pass a fixed one. */
  now?: () => number;
}

export type LocalStorage = Storage & {
  readonly driver: 'local';
  /** Absolute path of the file behind `key` (the key is validated first). */
  resolvePath(key: string): string;
};

export function createLocalStorage(options: LocalStorageOptions): LocalStorage {
  const root = path.resolve(options.dir);
  const now = options.now ?? Date.now;
  if (options.signingSecret.length === 0) {
    throw new AppError('invalid_input', 'Local storage needs a non-empty signingSecret');
  }

  function resolvePath(key: string): string {
    assertValidStorageKey(key);
    const filePath = path.resolve(root, key);
    // Key validation already rules this out; checked again because escaping root would be a file disclosure.
    if (!filePath.startsWith(root + path.sep)) {
      throw new AppError('invalid_input', 'Invalid storage key: it points outside the storage directory');
    }
    return filePath;
  }

  return {
    driver: 'local',
    resolvePath,

    async put(key: string, data: Buffer): Promise<void> {
      const filePath = resolvePath(key);
      await mkdir(path.dirname(filePath), { recursive: true });
      const tempPath = `${filePath}.${randomBytes(6).toString('hex')}.tmp`;
      const handle = await open(tempPath, 'wx');
      try {
        await handle.writeFile(data);
        await handle.datasync();
      } catch (error) {
        await handle.close();
        await rm(tempPath, { force: true });
        throw error;
      }
      await handle.close();
      try {
        await rename(tempPath, filePath);
      } catch (error) {
        await rm(tempPath, { force: true });
        throw error;
      }
    },

    async get(key: string): Promise<Buffer> {
      const filePath = resolvePath(key);
      try {
        return await readFile(filePath);
      } catch (error) {
        if (isMissingFile(error))
          throw new AppError('file_not_found', `No stored file ${key}`, { cause: error });
        throw error;
      }
    },

    async delete(key: string): Promise<void> {
      await rm(resolvePath(key), { force: true });
    },

    async url(key: string, expiresInSeconds: number): Promise<string> {
      assertPositiveSeconds(expiresInSeconds);
      const expiresAt = Math.floor(now() / 1000) + Math.ceil(expiresInSeconds);
      return signFileUrl(key, expiresAt, options.signingSecret);
    },
  };
}

function isMissingFile(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
