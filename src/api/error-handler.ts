import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, coerceError, ErrorCodes, type ErrorCode } from '../errors.ts';
import { isConnectionError } from '../store/db.ts';

export interface ErrorBody {
  error: { code: string; message: string };
}

/** Fastify's and @fastify/multipart's own errors that are the caller's fault, mapped to darkroom codes. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_BAD_URL: 'invalid_url',
  FST_ERR_MAX_PARAM_LENGTH: 'uri_too_long',
  FST_REQ_FILE_TOO_LARGE: 'payload_too_large',
  FST_FILES_LIMIT: 'payload_too_large',
  FST_FIELDS_LIMIT: 'payload_too_large',
  FST_PARTS_LIMIT: 'payload_too_large',
  FST_PROTO_VIOLATION: 'malformed_multipart',
  FST_INVALID_JSON_FIELD_ERROR: 'malformed_multipart',
  FST_MP_PREMATURE_CLOSE: 'malformed_multipart',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'unsupported_media_type',
};

const MESSAGES: Record<string, string> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'the body is not valid JSON',
  FST_FILES_LIMIT: 'the multipart body holds more than one file',
  FST_FIELDS_LIMIT: 'the multipart body holds more than 10 fields besides the file',
  FST_PARTS_LIMIT: 'the multipart body holds more than 12 parts',
};

/** A 4xx Fastify raises that has no entry above: the darkroom code of its status. */
const CODES_BY_STATUS: Record<number, ErrorCode> = {
  404: 'not_found',
  408: 'request_timeout',
  413: 'payload_too_large',
  414: 'uri_too_long',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
};

function fromFastify(err: FastifyError): AppError | undefined {
  const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
  if (mapped) {
    return new AppError(mapped, MESSAGES[err.code] ?? err.message);
  }
  // The JSON parser's own SyntaxError (e.g. a `__proto__` key refused by secure-json-parse).
  if (err instanceof SyntaxError && err.statusCode === 400)
    return new AppError('invalid_json', `the body is not valid JSON: ${err.message}`);
  if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)
    return new AppError(CODES_BY_STATUS[err.statusCode] ?? 'bad_request', err.message);
  return undefined;
}

function send(reply: FastifyReply, err: AppError): FastifyReply {
  if (err.retryAfterSeconds !== undefined)
    void reply.header('retry-after', String(Math.ceil(err.retryAfterSeconds)));
  // An unexpected error's message may carry internals; darkroom's own 503s say what to do.
  const message = err.code === 'internal' ? 'internal error' : err.message;
  return reply.status(err.httpStatus).send({ error: { code: err.code, message } } satisfies ErrorBody);
}

/** Every error leaves as `{ error: { code, message } }`; an unexpected error's message is hidden. */
export function installErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    const mapped = err instanceof AppError ? err : fromFastify(err as FastifyError);
    if (mapped) {
      if (mapped.httpStatus >= 500) request.log.error({ err: mapped.cause ?? mapped }, mapped.message);
      return send(reply, mapped);
    }
    // The database went away under the request (a restart, a cut network, a pool that cannot
    // connect): nothing it did committed unless its COMMIT was lost, and every write darkroom
    // exposes is safe to repeat with its Idempotency-Key. A 503 with Retry-After says so; a 500 did not.
    if (isConnectionError(err)) {
      request.log.warn({ err: coerceError(err) }, 'database unavailable');
      return send(
        reply,
        new AppError('database_unavailable', 'the database is unavailable; retry shortly', {
          retryAfterSeconds: 2,
        }),
      );
    }
    request.log.error({ err: coerceError(err) }, 'unhandled error');
    return send(reply, new AppError('internal', 'internal error'));
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, new AppError('not_found', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );
}

/**
 * Fastify's `frameworkErrors` option: errors its router raises before any route or hook runs
 * (bad percent-encoding, a path parameter over `maxParamLength`), in the same envelope.
 */
export function frameworkErrors(err: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  void send(reply, fromFastify(err) ?? new AppError('internal', 'internal error'));
}

/** Parser errors of Node's HTTP server that get an answer; the rest are malformed requests (400). */
const CLIENT_ERRORS: Record<string, { code: ErrorCode; message: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: {
    code: 'request_timeout',
    message: 'the request was not received in time (server.requestTimeoutMs)',
  },
  HPE_HEADER_OVERFLOW: {
    code: 'headers_too_large',
    message: 'the request line and headers are larger than the server accepts',
  },
};

/**
 * Fastify's `clientErrorHandler`: Node's HTTP parser refused the request (CL+TE, NUL or bad
 * characters in the request line or headers, oversized headers, request timeout) before Fastify
 * saw it. Answers in the error envelope and closes the connection, as Node's own handler does.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  const known = err.code ? CLIENT_ERRORS[err.code] : undefined;
  const code: ErrorCode = known?.code ?? 'bad_request';
  const message = known?.message ?? `malformed HTTP request${err.code ? ` (${err.code.toLowerCase()})` : ''}`;
  const status = ErrorCodes[code];
  const body = JSON.stringify({ error: { code, message } } satisfies ErrorBody);
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}
