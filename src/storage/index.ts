import { createLocalStorage } from './local.ts';
import type { LocalStorageOptions } from './local.ts';
import type { S3StorageOptions } from './s3.ts';
import type { Storage } from './types.ts';

export type StorageConfig =
  ({ driver: 'local' } & LocalStorageOptions) | ({ driver: 's3' } & S3StorageOptions);

/**
 * The storage driver named by `config.driver`. The S3 driver is imported only when configured:
 * the AWS SDK costs about 13 MB of memory in every process that loads it.
 */
export async function createStorage(config: StorageConfig): Promise<Storage> {
  switch (config.driver) {
    case 'local':
      return createLocalStorage(config);
    case 's3':
      return (await import('./s3.ts')).createS3Storage(config);
  }
}

export type { Storage } from './types.ts';
export { createLocalStorage } from './local.ts';
export type { LocalStorage, LocalStorageOptions } from './local.ts';
export type { S3Storage, S3StorageOptions } from './s3.ts';
export {
  FILE_ROUTE_PREFIX,
  assertValidStorageKey,
  fileSignature,
  signFileUrl,
  storageKeyProblem,
  verifyFileSignature,
} from './signing.ts';
