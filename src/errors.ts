/**
 * One error type for everything darkroom reports to a caller. Every error has a stable
 * `code` (documented in docs/errors.md) and the HTTP status the API answers with.
 */
export const ErrorCodes = {
  validation_failed: 400,
  invalid_json: 400,
  bad_request: 400,
  invalid_url: 400,
  malformed_multipart: 400,
  unauthorized: 401,
  insufficient_credits: 402,
  forbidden: 403,
  not_found: 404,
  task_not_found: 404,
  file_not_found: 404,
  upload_not_found: 404,
  unknown_plan: 422,
  unknown_type: 422,
  invalid_input: 422,
  unsupported_image: 415,
  unsupported_media_type: 415,
  image_too_large: 413,
  payload_too_large: 413,
  request_timeout: 408,
  uri_too_long: 414,
  headers_too_large: 431,
  idempotency_key_reused: 422,
  idempotency_key_in_flight: 409,
  task_not_cancelable: 409,
  planner_busy: 409,
  task_not_retryable: 409,
  input_fetch_failed: 422,
  input_url_forbidden: 422,
  webhook_url_forbidden: 422,
  queue_full: 429,
  too_many_streams: 429,
  user_queue_full: 429,
  rate_limited: 429,
  not_ready: 503,
  server_busy: 503,
  database_unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface AppErrorOptions {
  cause?: unknown;
  /** For 429/503 answers: how long the caller should wait before trying again. */
  retryAfterSeconds?: number;
  details?: Record<string, unknown>;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly httpStatus: number;
  readonly retryAfterSeconds: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.httpStatus = ErrorCodes[code];
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.details = options.details;
  }
}

/** Turns anything thrown into an Error, so catch blocks never deal with `unknown`. */
export function coerceError(value: unknown): Error & { code?: unknown } {
  if (value instanceof Error) return value;
  return new Error(typeof value === 'string' ? value : JSON.stringify(value));
}
