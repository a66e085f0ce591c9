import { createLocalStorage } from './local.ts';
import type { LocalStorageOptions } from './local.ts';
import { createS3Storage } from './s3.ts';
import type { S3StorageOptions } from './s3.ts';
import type { Storage } from './types.ts';

export type StorageConfig =
  ({ driver: 'local' } & LocalStorageOptions) | ({ driver: 's3' } & S3StorageOptions);

/** The storage driver named by `config.driver`. */
export function createStorage(config: StorageConfig): Storage {
  switch (config.driver) {
    case 'local':
      return createLocalStorage(config);
    case 's3':
      return createS3Storage(config);
  }
}

export type { Storage } from './types.ts';
export { createLocalStorage } from './local.ts';
export type { LocalStorage, LocalStorageOptions } from './local.ts';
export { createS3Storage, MAX_PRESIGNED_URL_SECONDS } from './s3.ts';
export type { S3Storage, S3StorageOptions } from './s3.ts';
export {
  FILE_ROUTE_PREFIX,
  assertValidStorageKey,
  fileSignature,
  signFileUrl,
  storageKeyProblem,
  verifyFileSignature,
} from './signing.ts';
