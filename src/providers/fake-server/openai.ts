import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import sharp from 'sharp';
import { json, parseJson, parseMultipart, readBody, send, text, type Headers, type Reply } from './http.ts';
import { MAX_FAKE_SIDE, notAnImage, renderFakePng } from './images.ts';
import type { KeyLimiter } from './key-limiter.ts';
import {
  runGeneration,
  type ContentFault,
  type GenerationProtocol,
  type SimContext,
  type SimProvider,
} from './sim-provider.ts';

function openaiError(
  status: number,
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
  headers: Headers = {},
): Reply {
  return json(status, { error: { message, type, param, code } }, headers);
}

/** Go-style duration as OpenAI prints it in x-ratelimit-reset-*: `120ms`, `1.5s`, `6m0s`. */
export function formatResetDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.ceil(ms))}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(3))}s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes}m${Number(((ms - minutes * 60_000) / 1000).toFixed(3))}s`;
}

function rateHeaders(limiter: KeyLimiter, now: number): Headers {
  const used = limiter.countInWindow(now);
  return {
    'x-ratelimit-limit-requests': limiter.key.rpm,
    'x-ratelimit-remaining-requests': Math.max(0, limiter.key.rpm - used),
    'x-ratelimit-reset-requests': formatResetDuration(limiter.windowResetMs(now)),
  };
}

function protocolFor(ctx: SimContext): GenerationProtocol {
  return {
    unauthorized(presented) {
      if (!presented) {
        return openaiError(
          401,
          "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
          'invalid_request_error',
          null,
        );
      }
      // Echoes the presented credential on purpose: adapters must keep it out of their messages.
      return openaiError(
        401,
        `Incorrect API key provided: ${presented}. You can find your API key at https://platform.openai.com/account/api-keys.`,
        'invalid_request_error',
        'invalid_api_key',
      );
    },
    rateLimited(retryAfterMs, limiter, reason) {
      const now = ctx.now();
      const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
      const headers: Headers = {
        ...rateHeaders(limiter, now),
        'retry-after': seconds,
        'retry-after-ms': Math.ceil(retryAfterMs),
      };
      if (reason !== 'rpm') headers['x-ratelimit-reset-requests'] = formatResetDuration(retryAfterMs);
      const message =
        reason === 'concurrency'
          ? `Too many concurrent requests for this key (limit ${limiter.key.concurrency}). Please try again in ${seconds}s.`
          : `Rate limit reached for images per minute: Limit ${limiter.key.rpm}, Used ${limiter.countInWindow(now)}, Requested 1. Please try again in ${seconds}s.`;
      return openaiError(429, message, 'requests', 'rate_limit_exceeded', null, headers);
    },
    serverError(status) {
      return status === 500
        ? openaiError(
            500,
            'The server had an error while processing your request. Sorry about that!',
            'server_error',
            null,
          )
        : openaiError(
            503,
            'The engine is currently overloaded, please try again later.',
            'server_error',
            null,
          );
    },
    malformed() {
      return {
        status: 200,
        contentType: 'application/json',
        body: '{"created": 1700000000, "data": [{"b64_json": "iVBORw0KGgoAAAAN',
      };
    },
  };
}

interface ImagesRequest {
  prompt: string;
  n: number;
  width: number;
  height: number;
  responseFormat: 'url' | 'b64_json';
}

function readImagesRequest(fields: {
  prompt: unknown;
  n: unknown;
  size: unknown;
  response_format: unknown;
  model: unknown;
}): ImagesRequest | Reply {
  const invalid = (message: string, param: string): Reply =>
    openaiError(400, message, 'invalid_request_error', null, param);
  if (typeof fields.prompt !== 'string' || fields.prompt.length === 0)
    return invalid("'prompt' is a required property", 'prompt');
  const n = fields.n === undefined ? 1 : Number(fields.n);
  if (!Number.isInteger(n) || n < 1 || n > 10)
    return invalid(`${String(fields.n)} is not a valid value for 'n': it must be between 1 and 10.`, 'n');
  const size = fields.size === undefined || fields.size === 'auto' ? '1024x1024' : fields.size;
  const sizeMatch = typeof size === 'string' ? /^(\d{2,4})x(\d{2,4})$/.exec(size) : null;
  if (!sizeMatch || Number(sizeMatch[1]) > MAX_FAKE_SIDE || Number(sizeMatch[2]) > MAX_FAKE_SIDE)
    return invalid(
      `Invalid value: '${String(size)}'. Supported values are: '256x256', '512x512', '1024x1024', '1536x1024', '1024x1536' and 'auto'.`,
      'size',
    );
  const model = typeof fields.model === 'string' ? fields.model : 'gpt-image-1';
  const format = fields.response_format ?? (model.startsWith('dall-e') ? 'url' : 'b64_json');
  if (format !== 'url' && format !== 'b64_json')
    return invalid(
      `Invalid value: '${String(format)}'. Supported values are: 'url' and 'b64_json'.`,
      'response_format',
    );
  return {
    prompt: fields.prompt,
    n,
    width: Number(sizeMatch[1]),
    height: Number(sizeMatch[2]),
    responseFormat: format,
  };
}

async function answer(
  ctx: SimContext,
  provider: SimProvider,
  req: IncomingMessage,
  request: ImagesRequest,
  fault: ContentFault,
  limiter: KeyLimiter,
): Promise<Reply> {
  const now = ctx.now();
  const headers: Headers = {
    ...rateHeaders(limiter, now),
    'x-request-id': `req_${randomUUID().replaceAll('-', '')}`,
  };
  if (fault === 'refusal') {
    return openaiError(
      400,
      'Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.',
      'invalid_request_error',
      'content_policy_violation',
      null,
      headers,
    );
  }
  const created = Math.floor(now / 1000);
  if (fault === 'no_image') return json(200, { created, data: [] }, headers);
  const data = [];
  for (let index = 0; index < request.n; index += 1) {
    const bytes =
      fault === 'not_an_image'
        ? notAnImage()
        : await renderFakePng({
            prompt: request.prompt,
            index,
            seed: 0,
            width: request.width,
            height: request.height,
          });
    if (request.responseFormat === 'b64_json') {
      data.push({ b64_json: bytes.toString('base64'), revised_prompt: request.prompt });
      continue;
    }
    const id = randomUUID();
    ctx.files.set(id, {
      provider: provider.name,
      bytes,
      contentType: 'image/png',
      expiresAt: now + ctx.fileTtlMs,
    });
    data.push({
      url: `http://${req.headers.host ?? '127.0.0.1'}/p/${encodeURIComponent(provider.name)}/files/${id}.png`,
      revised_prompt: request.prompt,
    });
  }
  return json(200, { created, data }, headers);
}

function bearer(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  return match?.[1]?.trim();
}

export async function handleOpenAIGenerations(
  ctx: SimContext,
  provider: SimProvider,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const body = parseJson(await readBody(req));
  await runGeneration({
    ctx,
    provider,
    req,
    res,
    presentedKey: bearer(req),
    protocol: protocolFor(ctx),
    produce: async (fault, limiter) => {
      if (typeof body !== 'object' || body === null) {
        return openaiError(
          400,
          'We could not parse the JSON body of your request.',
          'invalid_request_error',
          null,
        );
      }
      const fields = body as Record<string, unknown>;
      const request = readImagesRequest({
        prompt: fields.prompt,
        n: fields.n,
        size: fields.size,
        response_format: fields.response_format,
        model: fields.model,
      });
      if ('status' in request) return request;
      return answer(ctx, provider, req, request, fault, limiter);
    },
  });
}

export async function handleOpenAIEdits(
  ctx: SimContext,
  provider: SimProvider,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const form = await parseMultipart(req, await readBody(req));
  await runGeneration({
    ctx,
    provider,
    req,
    res,
    presentedKey: bearer(req),
    protocol: protocolFor(ctx),
    produce: async (fault, limiter) => {
      if (!form)
        return openaiError(
          400,
          'Invalid Content-Type header, expected multipart/form-data.',
          'invalid_request_error',
          null,
        );
      const images = [...form.getAll('image'), ...form.getAll('image[]')].filter(
        (entry): entry is File => typeof entry !== 'string',
      );
      if (images.length === 0)
        return openaiError(400, "'image' is a required property", 'invalid_request_error', null, 'image');
      for (const [index, image] of images.entries()) {
        try {
          await sharp(Buffer.from(await image.arrayBuffer())).metadata();
        } catch {
          return openaiError(
            400,
            `Invalid image file or mode for image ${index + 1}, please check your image file.`,
            'invalid_request_error',
            'invalid_image_format',
            'image',
          );
        }
      }
      const field = (name: string): string | undefined => {
        const value = form.get(name);
        return typeof value === 'string' ? value : undefined;
      };
      const request = readImagesRequest({
        prompt: field('prompt'),
        n: field('n'),
        size: field('size'),
        response_format: field('response_format'),
        model: field('model'),
      });
      if ('status' in request) return request;
      return answer(ctx, provider, req, request, fault, limiter);
    },
  });
}

/** Serves a url result until it expires, as the CDN behind real url results does. */
export function handleFile(
  ctx: SimContext,
  provider: SimProvider,
  res: ServerResponse,
  fileName: string,
): void {
  const id = fileName.replace(/\.png$/, '');
  const file = ctx.files.get(id);
  if (!file || file.provider !== provider.name || file.expiresAt <= ctx.now()) {
    if (file && file.expiresAt <= ctx.now()) ctx.files.delete(id);
    send(res, text(404, 'BlobNotFound: The specified blob does not exist.'));
    return;
  }
  send(res, { status: 200, body: file.bytes, contentType: file.contentType });
}
