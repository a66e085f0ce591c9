/**
 * Where result images (originals and thumbnails) and uploads live.
 * Keys are slash-separated relative paths such as `tasks/<task>/0003.png`; never absolute,
 * never containing `..`.
 */
export interface Storage {
  readonly driver: 'local' | 's3';
  put(key: string, data: Buffer, contentType: string): Promise<void>;
  get(key: string): Promise<Buffer>;
  delete(key: string): Promise<void>;
  /**
   * Renames `from` to `to` (replacing `to`), durable when it resolves: a result image's staged
   * copy becomes the stored one without being written again. Throws `file_not_found` when `from`
   * is missing. Optional: a driver without it (S3) has the caller put a copy and delete `from`.
   */
  move?(from: string, to: string): Promise<void>;
  /**
   * A URL the end user can fetch the object from. For `local` this is a path on darkroom's
   * own HTTP server (`/v1/files/...?exp=...&sig=...`, starting with `/`), which the API turns
   * into an absolute URL; for `s3` an absolute presigned or public URL.
   */
  url(key: string, expiresInSeconds: number): Promise<string>;
  close?(): Promise<void>;
}
