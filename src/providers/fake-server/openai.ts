/**
 * The simulated OpenAI Images API: `/v1/images/generations` and `/v1/images/edits`, strict per model
 * (openai-request.ts), answering in the requested `output_format` with the response fields of the SDK's
 * `ImagesResponse` (openai-node src/resources/images.ts).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import sharp from 'sharp';
import { synthSvg } from '../../images/synth.ts';
import { parseJson, parseMultipart, readBody, json, send, text, type Headers, type Reply } from './http.ts';
import { notAnImage, renderFakePng } from './images.ts';
import type { KeyLimiter } from './key-limiter.ts';
import {
  openaiError,
  readImagesRequest,
  type ImagesRequest,
  type RawImagesFields,
} from './openai-request.ts';
import {
  runGeneration,
  type ContentFault,
  type GenerationProtocol,
  type SimContext,
  type SimProvider,
} from './sim-provider.ts';

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

/**
 * `presentedKey`'s limiter, when the key is known, lets error answers carry the x-ratelimit-* headers
 * OpenAI sends on every answer: they describe the limit, not when to retry (adapters must not wait
 * for `x-ratelimit-reset-requests` after a 5xx).
 */
function protocolFor(ctx: SimContext, presentedKey?: KeyLimiter): GenerationProtocol {
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
      // A hint-less 429 (a relay's, an overloaded gateway's): no retry-after and no reset time.
      const headers: Headers =
        reason === 'scripted_no_hint'
          ? { 'x-ratelimit-limit-requests': limiter.key.rpm }
          : {
              ...rateHeaders(limiter, now),
              'retry-after': seconds,
              'retry-after-ms': Math.ceil(retryAfterMs),
            };
      if (reason !== 'rpm' && reason !== 'scripted_no_hint')
        headers['x-ratelimit-reset-requests'] = formatResetDuration(retryAfterMs);
      const message =
        reason === 'concurrency'
          ? `Too many concurrent requests for this key (limit ${limiter.key.concurrency}). Please try again in ${seconds}s.`
          : `Rate limit reached for images per minute: Limit ${limiter.key.rpm}, Used ${limiter.countInWindow(now)}, Requested 1. Please try again in ${seconds}s.`;
      return openaiError(429, message, 'requests', 'rate_limit_exceeded', null, headers);
    },
    serverError(status) {
      const headers = presentedKey ? rateHeaders(presentedKey, ctx.now()) : {};
      return status === 500
        ? openaiError(
            500,
            'The server had an error while processing your request. Sorry about that!',
            'server_error',
            null,
            null,
            headers,
          )
        : openaiError(
            503,
            'The engine is currently overloaded, please try again later.',
            'server_error',
            null,
            null,
            headers,
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

const MIME_BY_FORMAT = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  svg: 'image/svg+xml',
} as const;

/** One result in the requested format: real bytes of that format, deterministic per request and index. */
async function renderResult(request: ImagesRequest, index: number, inputs: number): Promise<Buffer> {
  const picture = { prompt: request.prompt, seed: inputs, width: request.width, height: request.height };
  switch (request.outputFormat) {
    case 'svg':
      return Buffer.from(synthSvg({ ...picture, index }));
    case 'gif': {
      // An animated GIF of frame_count frames (default 9), 200 ms each ("Defaults to 200").
      const frames = await Promise.all(
        Array.from({ length: request.frameCount }, (_, frame) =>
          renderFakePng({ ...picture, index: index * 100 + frame }),
        ),
      );
      return sharp(frames, { join: { animated: true } })
        .gif({ delay: 200, effort: 1, colours: 16, dither: 0 })
        .toBuffer();
    }
    case 'jpeg':
      return sharp(await renderFakePng({ ...picture, index }))
        .jpeg()
        .toBuffer();
    case 'webp':
      return sharp(await renderFakePng({ ...picture, index }))
        .webp()
        .toBuffer();
    case 'png':
      return renderFakePng({ ...picture, index });
  }
}

// Output tokens of one 1024x1024 image by quality, from OpenAI's image generation guide
// (developers.openai.com/api/docs/guides/image-generation, "Cost and latency"), scaled by area.
const OUTPUT_TOKENS_1024: Record<string, number> = { low: 272, medium: 1056, high: 4160 };

/** The SDK's `ImagesResponse.Usage` shape; the counts are a deterministic approximation. */
function usageOf(request: ImagesRequest, inputImages: number): Record<string, unknown> {
  const perImage = Math.round(
    (OUTPUT_TOKENS_1024[request.quality] ?? 4160) * ((request.width * request.height) / (1024 * 1024)),
  );
  const textTokens = Math.max(1, Math.ceil(request.prompt.length / 4));
  const imageTokens = inputImages * 323;
  const output = perImage * request.n;
  return {
    input_tokens: textTokens + imageTokens,
    input_tokens_details: { image_tokens: imageTokens, text_tokens: textTokens },
    output_tokens: output,
    total_tokens: textTokens + imageTokens + output,
    output_tokens_details: { image_tokens: output, text_tokens: 0 },
  };
}

async function answer(
  ctx: SimContext,
  provider: SimProvider,
  req: IncomingMessage,
  request: ImagesRequest,
  fault: ContentFault,
  limiter: KeyLimiter,
  inputs: Buffer[] = [],
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
  // GPT image models echo what they made (ImagesResponse: background, output_format, quality, size, usage).
  const described = request.gpt
    ? {
        background: request.background,
        output_format: request.outputFormat,
        quality: request.quality,
        size: `${request.width}x${request.height}`,
        usage: usageOf(request, inputs.length),
      }
    : {};
  if (fault === 'no_image') return json(200, { created, data: [], ...described }, headers);
  // Edits depend on their inputs: the same prompt with other pictures gives other results.
  const inputSeed = inputs.length
    ? createHash('sha256').update(Buffer.concat(inputs)).digest().readUInt32LE(0)
    : 0;
  const results = await Promise.all(
    Array.from({ length: request.n }, (_, index) =>
      fault === 'not_an_image' ? notAnImage() : renderResult(request, index, inputSeed),
    ),
  );
  const data = [];
  for (const bytes of results) {
    if (request.responseFormat === 'b64_json') {
      // "revised_prompt … Not returned by GPT image models."
      data.push({
        b64_json: bytes.toString('base64'),
        ...(request.gpt ? {} : { revised_prompt: request.prompt }),
      });
      continue;
    }
    const id = randomUUID();
    ctx.files.set(id, {
      provider: provider.name,
      bytes,
      contentType: MIME_BY_FORMAT[request.outputFormat],
      expiresAt: now + ctx.fileTtlMs,
    });
    data.push({
      url: `http://${req.headers.host ?? '127.0.0.1'}/p/${encodeURIComponent(provider.name)}/files/${id}.png`,
      revised_prompt: request.prompt,
    });
  }
  return json(200, { created, data, ...described }, headers);
}

function fieldsOf(get: (name: keyof RawImagesFields) => unknown): RawImagesFields {
  return {
    prompt: get('prompt'),
    n: get('n'),
    size: get('size'),
    response_format: get('response_format'),
    model: get('model'),
    output_format: get('output_format'),
    quality: get('quality'),
    style: get('style'),
    background: get('background'),
    frame_count: get('frame_count'),
    input_fidelity: get('input_fidelity'),
  };
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
    protocol: protocolFor(ctx, provider.findKey(bearer(req))),
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
      const request = readImagesRequest(fieldsOf((name) => fields[name]));
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
    protocol: protocolFor(ctx, provider.findKey(bearer(req))),
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
      const request = readImagesRequest(fieldsOf(field));
      if ('status' in request) return request;
      const bytes = await Promise.all(images.map(async (image) => Buffer.from(await image.arrayBuffer())));
      return answer(ctx, provider, req, request, fault, limiter, bytes);
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
