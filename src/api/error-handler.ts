import type { FastifyError, FastifyInstance } from 'fastify';
import { AppError, coerceError, type ErrorCode } from '../errors.ts';

export interface ErrorBody {
  error: { code: string; message: string };
}

/** Fastify's own errors that are the caller's fault, mapped to darkroom codes. */
const FASTIFY_CODES: Record<string, { code: ErrorCode; status: number }> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'unsupported_media_type', status: 415 },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'invalid_json', status: 400 },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'payload_too_large', status: 413 },
  FST_REQ_FILE_TOO_LARGE: { code: 'payload_too_large', status: 413 },
  FST_FILES_LIMIT: { code: 'payload_too_large', status: 413 },
  FST_PARTS_LIMIT: { code: 'payload_too_large', status: 413 },
  FST_INVALID_MULTIPART_CONTENT_TYPE: { code: 'unsupported_media_type', status: 415 },
};

/** Every error leaves as `{ error: { code, message } }`; 5xx messages are hidden. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    if (err instanceof AppError) {
      if (err.retryAfterSeconds !== undefined)
        void reply.header('retry-after', String(Math.ceil(err.retryAfterSeconds)));
      if (err.httpStatus >= 500) request.log.error({ err: err.cause ?? err }, err.message);
      const message = err.httpStatus >= 500 ? 'internal error' : err.message;
      return reply.status(err.httpStatus).send({ error: { code: err.code, message } } satisfies ErrorBody);
    }
    const fe = err as FastifyError;
    const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
    if (mapped)
      return reply.status(mapped.status).send({ error: { code: mapped.code, message: fe.message } });
    if (
      fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      (err instanceof SyntaxError && fe.statusCode === 400)
    ) {
      return reply
        .status(400)
        .send({ error: { code: 'invalid_json', message: `the body is not valid JSON: ${fe.message}` } });
    }
    if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      return reply.status(fe.statusCode).send({ error: { code: 'validation_failed', message: fe.message } });
    }
    request.log.error({ err: coerceError(err) }, 'unhandled error');
    return reply.status(500).send({ error: { code: 'internal', message: 'internal error' } });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      error: { code: 'not_found', message: `no route for ${request.method} ${request.url.split('?')[0]}` },
    }),
  );
}
