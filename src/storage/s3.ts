import {
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { AppError } from '../errors.ts';
import { assertPositiveSeconds, assertValidStorageKey } from './signing.ts';
import type { Storage } from './types.ts';

/** SigV4 presigned URLs cannot live longer than seven days. */
export const MAX_PRESIGNED_URL_SECONDS = 7 * 24 * 3600;

export interface S3StorageOptions {
  bucket: string;
  /** Omit for AWS S3; `https://<account>.r2.cloudflarestorage.com` for R2; the MinIO URL for MinIO. */
  endpoint?: string;
  /** `auto` for R2; any region name for MinIO (e.g. `us-east-1`). */
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** `https://host/bucket/key` instead of `https://bucket.host/key`; needed by MinIO and IP endpoints. */
  forcePathStyle?: boolean;
  /** When set, url() returns `${publicBaseUrl}/${key}` (a CDN or public bucket) instead of presigning. */
  publicBaseUrl?: string;
  /** Upper bound for presigned URL lifetimes; a longer request is shortened to it. Default and maximum 7 days. */
  urlExpirySeconds?: number;
}

export type S3Storage = Storage & { readonly driver: 's3'; readonly bucket: string };

export function createS3Storage(options: S3StorageOptions): S3Storage {
  const { bucket } = options;
  const maxUrlSeconds = Math.min(
    options.urlExpirySeconds ?? MAX_PRESIGNED_URL_SECONDS,
    MAX_PRESIGNED_URL_SECONDS,
  );
  assertPositiveSeconds(maxUrlSeconds);
  const publicBaseUrl = options.publicBaseUrl?.replace(/\/+$/, '');

  const client = new S3Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    forcePathStyle: options.forcePathStyle ?? false,
    credentials: {
      accessKeyId: options.accessKeyId,
      secretAccessKey: options.secretAccessKey,
      ...(options.sessionToken === undefined ? {} : { sessionToken: options.sessionToken }),
    },
    // The SDK's default CRC32 checksums (and aws-chunked uploads) are not implemented by every
    // S3-compatible store (older MinIO, several R2-like services); only send them when an API requires one.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });

  return {
    driver: 's3',
    bucket,

    async put(key: string, data: Buffer, contentType: string): Promise<void> {
      assertValidStorageKey(key);
      await client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: data,
          ContentType: contentType,
          ContentLength: data.length,
        }),
      );
    },

    async get(key: string): Promise<Buffer> {
      assertValidStorageKey(key);
      try {
        const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        if (response.Body === undefined) throw new AppError('file_not_found', `No stored file ${key}`);
        return Buffer.from(await response.Body.transformToByteArray());
      } catch (error) {
        if (isNotFound(error))
          throw new AppError('file_not_found', `No stored file ${key}`, { cause: error });
        throw error;
      }
    },

    async delete(key: string): Promise<void> {
      assertValidStorageKey(key);
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },

    async url(key: string, expiresInSeconds: number): Promise<string> {
      assertValidStorageKey(key);
      if (publicBaseUrl !== undefined) return `${publicBaseUrl}/${key}`;
      assertPositiveSeconds(expiresInSeconds);
      const expiresIn = Math.min(Math.ceil(expiresInSeconds), maxUrlSeconds);
      return getSignedUrl(client, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn });
    },

    async close(): Promise<void> {
      client.destroy();
    },
  };
}

function isNotFound(error: unknown): boolean {
  if (!(error instanceof S3ServiceException)) return false;
  if (error.name === 'NoSuchBucket') return false;
  return error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata.httpStatusCode === 404;
}
