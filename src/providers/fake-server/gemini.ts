import type { IncomingMessage, ServerResponse } from 'node:http';
import { json, parseJson, readBody, type Reply } from './http.ts';
import { notAnImage, renderFakePng } from './images.ts';
import {
  runGeneration,
  type ContentFault,
  type GenerationProtocol,
  type RateLimitReason,
  type SimContext,
  type SimProvider,
} from './sim-provider.ts';

const GENERATE_CONTENT = /^\/(v1beta|v1)\/models\/([^/:]+):generateContent$/;

/** The model named by a Gemini generateContent path, or undefined when the path is not one. */
export function matchGeminiPath(path: string): string | undefined {
  return GENERATE_CONTENT.exec(path)?.[2];
}

/** Gemini image models (…-image, …-image-preview) refuse more than one candidate. */
function isImageModel(model: string): boolean {
  return /-image(-|$)/.test(model);
}

/**
 * Output size per `imageConfig.aspectRatio`, from the table of
 * https://ai.google.dev/gemini-api/docs/image-generation (gemini-2.5-flash-image, 1290 tokens each).
 */
export const GEMINI_ASPECT_RATIOS: Readonly<Record<string, { width: number; height: number }>> = {
  '1:1': { width: 1024, height: 1024 },
  '2:3': { width: 832, height: 1248 },
  '3:2': { width: 1248, height: 832 },
  '3:4': { width: 864, height: 1184 },
  '4:3': { width: 1184, height: 864 },
  '4:5': { width: 896, height: 1152 },
  '5:4': { width: 1152, height: 896 },
  '9:16': { width: 768, height: 1344 },
  '16:9': { width: 1344, height: 768 },
  '21:9': { width: 1536, height: 672 },
};

const HELP = {
  '@type': 'type.googleapis.com/google.rpc.Help',
  links: [
    {
      description: 'Learn more about Gemini API quotas',
      url: 'https://ai.google.dev/gemini-api/docs/rate-limits',
    },
  ],
};

/**
 * The three 429 shapes the Gemini API answers, with google.rpc error details as it sends them
 * (https://ai.google.dev/gemini-api/docs/troubleshooting; bodies as reported in
 * google-gemini/gemini-cli#8437 and googleapis/python-genai#1427, #2065):
 * - a per-minute quota: QuotaFailure naming `GenerateRequestsPerMinutePerProjectPerModel`, and RetryInfo;
 * - no hint at all: "Resource has been exhausted (e.g. check quota)." with no details;
 * - a per-day quota: QuotaFailure naming `GenerateRequestsPerDayPerProjectPerModel`, no RetryInfo.
 */
function rateLimitedReply(retryAfterMs: number, rpm: number, reason: RateLimitReason): Reply {
  if (reason === 'scripted_no_hint')
    return googleError(429, 'RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).');
  const quota = (quotaId: string, quotaValue: string) => ({
    '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
    violations: [
      {
        quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
        quotaId,
        quotaDimensions: { location: 'global', model: 'gemini-2.5-flash-image' },
        quotaValue,
      },
    ],
  });
  const message =
    'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.';
  if (reason === 'scripted_daily')
    return googleError(429, 'RESOURCE_EXHAUSTED', message, [
      quota('GenerateRequestsPerDayPerProjectPerModel-FreeTier', '100'),
      HELP,
    ]);
  // A google.protobuf.Duration in JSON (`7s`); whole seconds, rounded up, so a retry is never early.
  const delay = `${Math.max(1, Math.ceil(retryAfterMs / 1000))}s`;
  return googleError(429, 'RESOURCE_EXHAUSTED', `${message} Please retry in ${delay}.`, [
    quota('GenerateRequestsPerMinutePerProjectPerModel-FreeTier', String(rpm)),
    HELP,
    { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: delay },
  ]);
}

function googleError(code: number, status: string, message: string, details?: unknown[]): Reply {
  return json(code, { error: { code, message, status, ...(details ? { details } : {}) } });
}

const protocol: GenerationProtocol = {
  unauthorized(presented) {
    if (!presented) {
      return googleError(
        403,
        'PERMISSION_DENIED',
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
      );
    }
    return googleError(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', [
      {
        '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
        reason: 'API_KEY_INVALID',
        domain: 'googleapis.com',
        metadata: { service: 'generativelanguage.googleapis.com' },
      },
    ]);
  },
  rateLimited(retryAfterMs, limiter, reason) {
    return rateLimitedReply(retryAfterMs, limiter.key.rpm, reason);
  },
  serverError(status) {
    return status === 500
      ? googleError(
          500,
          'INTERNAL',
          'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
        )
      : googleError(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.');
  },
  malformed() {
    return {
      status: 200,
      contentType: 'application/json; charset=UTF-8',
      body: '{"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo',
    };
  },
};

interface GeminiRequest {
  prompt: string;
  candidateCount: number;
  seed: number;
  /** Output size from imageConfig.aspectRatio; undefined: the simulator's square default. */
  size?: { width: number; height: number } | undefined;
}

/** Validates a generateContent body the way the API does for the fields the simulator uses. */
function readRequest(body: unknown, model: string): GeminiRequest | Reply {
  const invalid = (message: string): Reply => googleError(400, 'INVALID_ARGUMENT', message);
  if (typeof body !== 'object' || body === null) return invalid('Invalid JSON payload received.');
  const { contents, generationConfig } = body as { contents?: unknown; generationConfig?: unknown };
  if (!Array.isArray(contents) || contents.length === 0) {
    return invalid('* GenerateContentRequest.contents: contents is not specified\n');
  }
  const texts: string[] = [];
  let parts = 0;
  for (const content of contents as unknown[]) {
    const contentParts = (content as { parts?: unknown } | null)?.parts;
    if (!Array.isArray(contentParts))
      return invalid('* GenerateContentRequest.contents[].parts: parts is not specified\n');
    for (const part of contentParts as Array<Record<string, unknown> | null>) {
      parts += 1;
      if (typeof part?.text === 'string') {
        texts.push(part.text);
        continue;
      }
      const inline = (part?.inlineData ?? part?.inline_data) as
        { mimeType?: unknown; mime_type?: unknown; data?: unknown } | undefined;
      if (!inline)
        return invalid(
          "* GenerateContentRequest.contents[].parts[]: required oneof field 'data' must have one initialized field\n",
        );
      const mime = inline.mimeType ?? inline.mime_type;
      if (typeof mime !== 'string' || !mime.startsWith('image/'))
        return invalid(`Unsupported MIME type: ${String(mime)}`);
      if (typeof inline.data !== 'string' || Buffer.from(inline.data, 'base64').length === 0) {
        return invalid(
          "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), Base64 decoding failed",
        );
      }
    }
  }
  if (parts === 0) return invalid('* GenerateContentRequest.contents[].parts: parts is not specified\n');
  const config = (generationConfig ?? {}) as {
    candidateCount?: unknown;
    seed?: unknown;
    imageConfig?: unknown;
  };
  const candidateCount = config.candidateCount ?? 1;
  // google-gemini/gemini-cli#10370: "Multiple candidates is not enabled for models/gemini-2.5-flash-image-preview".
  if (isImageModel(model) && typeof candidateCount === 'number' && candidateCount > 1)
    return invalid(`Multiple candidates is not enabled for models/${model}`);
  const aspectRatio = (config.imageConfig as { aspectRatio?: unknown } | undefined)?.aspectRatio;
  const size = aspectRatio === undefined ? undefined : GEMINI_ASPECT_RATIOS[String(aspectRatio)];
  if (aspectRatio !== undefined && !size)
    return invalid(
      `* GenerateContentRequest.generation_config.image_config.aspect_ratio: unsupported aspect ratio ${JSON.stringify(aspectRatio)}; supported: ${Object.keys(GEMINI_ASPECT_RATIOS).join(', ')}\n`,
    );
  if (
    typeof candidateCount !== 'number' ||
    !Number.isInteger(candidateCount) ||
    candidateCount < 1 ||
    candidateCount > 8
  ) {
    return invalid('* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8\n');
  }
  const seed = typeof config.seed === 'number' ? config.seed : 0;
  return { prompt: texts.join('\n'), candidateCount, seed, size };
}

async function answer(
  ctx: SimContext,
  model: string,
  request: GeminiRequest,
  fault: ContentFault,
): Promise<Reply> {
  const usageMetadata = {
    promptTokenCount: 12,
    candidatesTokenCount: 1290 * request.candidateCount,
    totalTokenCount: 12 + 1290 * request.candidateCount,
  };
  if (fault === 'refusal') {
    return json(200, {
      promptFeedback: { blockReason: 'SAFETY' },
      usageMetadata: { promptTokenCount: 12, totalTokenCount: 12 },
      modelVersion: model,
    });
  }
  if (fault === 'no_image') {
    return json(200, {
      candidates: [
        {
          content: { parts: [{ text: 'I can describe this scene, but here is no picture.' }], role: 'model' },
          finishReason: 'STOP',
          index: 0,
        },
      ],
      usageMetadata,
      modelVersion: model,
    });
  }
  const rendered = await Promise.all(
    Array.from({ length: request.candidateCount }, (_, index) =>
      fault === 'not_an_image'
        ? notAnImage()
        : renderFakePng({
            prompt: request.prompt,
            index,
            seed: request.seed,
            width: request.size?.width ?? ctx.imageSize,
            height: request.size?.height ?? ctx.imageSize,
          }),
    ),
  );
  const candidates = [];
  for (const [index, bytes] of rendered.entries()) {
    candidates.push({
      content: {
        parts: [{ inlineData: { mimeType: 'image/png', data: bytes.toString('base64') } }],
        role: 'model',
      },
      finishReason: 'STOP',
      index,
    });
  }
  return json(200, {
    candidates,
    usageMetadata,
    modelVersion: model,
    responseId: `sim-${ctx.now().toString(36)}`,
  });
}

export async function handleGemini(
  ctx: SimContext,
  provider: SimProvider,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  model: string,
): Promise<void> {
  const body = parseJson(await readBody(req));
  const header = req.headers['x-goog-api-key'];
  const presentedKey =
    (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('key') ?? undefined;
  await runGeneration({
    ctx,
    provider,
    req,
    res,
    presentedKey,
    protocol,
    produce: async (fault) => {
      // An id the path escaped (`models%2Fgemini-…`, as an over-eager client builds it) names no model.
      if (/%|\//.test(model))
        return googleError(
          404,
          'NOT_FOUND',
          `models/${model} is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.`,
        );
      const request = readRequest(body, model);
      if ('status' in request) return request;
      return answer(ctx, model, request, fault);
    },
  });
}
