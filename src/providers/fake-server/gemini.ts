import type { IncomingMessage, ServerResponse } from 'node:http';
import { json, parseJson, readBody, type Reply } from './http.ts';
import { notAnImage, renderFakePng } from './images.ts';
import {
  runGeneration,
  type ContentFault,
  type GenerationProtocol,
  type SimContext,
  type SimProvider,
} from './sim-provider.ts';

const GENERATE_CONTENT = /^\/(v1beta|v1)\/models\/([^/:]+):generateContent$/;

/** The model named by a Gemini generateContent path, or undefined when the path is not one. */
export function matchGeminiPath(path: string): string | undefined {
  return GENERATE_CONTENT.exec(path)?.[2];
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
  rateLimited(retryAfterMs, limiter) {
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    return googleError(
      429,
      'RESOURCE_EXHAUSTED',
      `You exceeded your current quota, please check your plan and billing details. Please retry in ${seconds}s.`,
      [
        {
          '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
          violations: [
            {
              quotaMetric: 'generativelanguage.googleapis.com/generate_content_requests',
              quotaId: 'GenerateRequestsPerMinutePerProjectPerModel',
              quotaValue: String(limiter.key.rpm),
            },
          ],
        },
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${seconds}s` },
      ],
    );
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
}

/** Validates a generateContent body the way the API does for the fields the simulator uses. */
function readRequest(body: unknown): GeminiRequest | Reply {
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
  const config = (generationConfig ?? {}) as { candidateCount?: unknown; seed?: unknown };
  const candidateCount = config.candidateCount ?? 1;
  if (
    typeof candidateCount !== 'number' ||
    !Number.isInteger(candidateCount) ||
    candidateCount < 1 ||
    candidateCount > 8
  ) {
    return invalid('* GenerateContentRequest.generation_config.candidate_count: must be between 1 and 8\n');
  }
  const seed = typeof config.seed === 'number' ? config.seed : 0;
  return { prompt: texts.join('\n'), candidateCount, seed };
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
  const candidates = [];
  for (let index = 0; index < request.candidateCount; index += 1) {
    const bytes =
      fault === 'not_an_image'
        ? notAnImage()
        : await renderFakePng({
            prompt: request.prompt,
            index,
            seed: request.seed,
            width: ctx.imageSize,
            height: ctx.imageSize,
          });
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
      const request = readRequest(body);
      if ('status' in request) return request;
      return answer(ctx, model, request, fault);
    },
  });
}
