/**
 * Gemini native image generation (`models/{model}:generateContent`, e.g. gemini-2.5-flash-image).
 * One call of this adapter is one request for one image: Gemini image models refuse
 * `generationConfig.candidateCount` > 1 (400 INVALID_ARGUMENT "Multiple candidates is not enabled
 * for models/…", google-gemini/gemini-cli#10370, googleapis/js-genai#1609), so
 * src/providers/capabilities.ts gives them one image per request and src/providers/fan-out.ts
 * sends a batch of N as N parallel calls, each counted by the scheduler against the key's limits.
 */
import { fetch } from 'undici';
import {
  credentialOf,
  decodeAll,
  Deadline,
  guardAdapter,
  isRecord,
  isRetryableStatus,
  outcomeForThrown,
  parseDurationMs,
  parseJsonText,
  parseRetryAfterMs,
  snippet,
} from './http-util.ts';
import { nextPacificMidnightMs } from '../policy/rests.ts';
import { geminiModelResource } from './capabilities.ts';
import type { ProviderAdapter, ProviderCall, ProviderOutcome } from './types.ts';

export interface GeminiProviderOptions {
  /** Default https://generativelanguage.googleapis.com */
  baseUrl?: string;
  model: string;
  timeoutMs: number;
  /** generationConfig.responseModalities; default ['TEXT', 'IMAGE'], which every image model accepts. */
  responseModalities?: string[];
}

/** Finish and block reasons that mean "the provider refused this content", not "try again". */
const REFUSAL_REASONS = new Set([
  'SAFETY',
  'IMAGE_SAFETY',
  'PROHIBITED_CONTENT',
  'IMAGE_PROHIBITED_CONTENT',
  'BLOCKLIST',
  'SPII',
  'RECITATION',
  'IMAGE_RECITATION',
  'OTHER',
]);

export function createGeminiProvider(options: GeminiProviderOptions): ProviderAdapter {
  const url = generateContentUrl(
    options.baseUrl ?? 'https://generativelanguage.googleapis.com',
    options.model,
  );
  return {
    type: 'gemini',
    call: guardAdapter('gemini', (call) => callGemini(url, options, call)),
  };
}

/**
 * `{base}/v1beta/{model}:generateContent` with the model as @google/genai's `tModel` names it
 * (`models/x` or `tunedModels/x`; a bare id gets `models/`): the slash between collection and id
 * stays a slash, each segment is escaped on its own.
 */
export function generateContentUrl(baseUrl: string, model: string): string {
  const resource = geminiModelResource(model).split('/').map(encodeURIComponent).join('/');
  return `${baseUrl.replace(/\/+$/, '')}/v1beta/${resource}:generateContent`;
}

function requestBody(options: GeminiProviderOptions, call: ProviderCall): unknown {
  const parts: unknown[] = [{ text: call.prompt }];
  for (const input of call.inputs)
    parts.push({ inlineData: { mimeType: input.mime, data: input.data.toString('base64') } });
  const imageConfig: Record<string, unknown> = {};
  if (typeof call.params.aspectRatio === 'string') imageConfig.aspectRatio = call.params.aspectRatio;
  if (typeof call.params.imageSize === 'string') imageConfig.imageSize = call.params.imageSize;
  return {
    contents: [{ role: 'user', parts }],
    generationConfig: {
      responseModalities: options.responseModalities ?? ['TEXT', 'IMAGE'],
      ...(call.count > 1 ? { candidateCount: call.count } : {}),
      // generationConfig.seed is an int32.
      seed: Math.abs(Math.trunc(call.seed)) % 2_147_483_647,
      ...(Object.keys(imageConfig).length > 0 ? { imageConfig } : {}),
    },
  };
}

async function callGemini(
  url: string,
  options: GeminiProviderOptions,
  call: ProviderCall,
): Promise<ProviderOutcome> {
  const deadline = new Deadline(call.signal, options.timeoutMs);
  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': credentialOf(call.key) },
      body: JSON.stringify(requestBody(options, call)),
      signal: deadline.signal,
    });
    const text = await response.text();
    if (!response.ok)
      return classifyGeminiError(response.status, text, response.headers.get('retry-after'), Date.now());
    const parsed = parseJsonText(text);
    if (!parsed.ok)
      return {
        kind: 'transient',
        message: `gemini: malformed JSON in a ${response.status} response: ${snippet(text, 120)}`,
      };
    call.onAnswered?.();
    return await classifyGeminiBody(parsed.value, call.count);
  } catch (error) {
    return outcomeForThrown(error, deadline, 'gemini generateContent');
  } finally {
    deadline.dispose();
  }
}

/** Google's `error.details[]` RetryInfo, e.g. `{ '@type': '…google.rpc.RetryInfo', retryDelay: '7s' }`. */
function retryDelayMs(details: unknown): number | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const detail of details) {
    if (
      isRecord(detail) &&
      String(detail['@type']).endsWith('google.rpc.RetryInfo') &&
      typeof detail.retryDelay === 'string'
    ) {
      return parseDurationMs(detail.retryDelay);
    }
  }
  return undefined;
}

/**
 * The per-day quota a 429 names, if any: `google.rpc.QuotaFailure` violations carry a `quotaId`
 * such as `GenerateRequestsPerDayPerProjectPerModel-FreeTier` (google-gemini/gemini-cli#8437 shows
 * the body; https://ai.google.dev/gemini-api/docs/rate-limits lists RPM, TPM and RPD quotas).
 */
function dailyQuotaId(details: unknown): string | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const detail of details) {
    if (!isRecord(detail) || !String(detail['@type']).endsWith('google.rpc.QuotaFailure')) continue;
    const violations = Array.isArray(detail.violations) ? detail.violations.filter(isRecord) : [];
    for (const v of violations) {
      const id = typeof v.quotaId === 'string' ? v.quotaId : '';
      if (/PerDay/i.test(id)) return id;
    }
  }
  return undefined;
}

function errorInfoReason(details: unknown): string | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const detail of details) {
    if (
      isRecord(detail) &&
      String(detail['@type']).endsWith('google.rpc.ErrorInfo') &&
      typeof detail.reason === 'string'
    ) {
      return detail.reason;
    }
  }
  return undefined;
}

/**
 * Classifies a non-2xx answer from the Gemini API (`{ error: { code, status, message, details } }`).
 * A 429 naming a per-day quota rests the key until the quota resets at midnight Pacific time; one
 * with RetryInfo waits its retryDelay; one with neither carries no hint (the key's rest then grows
 * with each such 429 in a row: src/policy/rests.ts).
 */
export function classifyGeminiError(
  status: number,
  text: string,
  retryAfterHeader: string | null,
  nowMs: number,
): ProviderOutcome {
  const parsed = parseJsonText(text);
  const error =
    parsed.ok && isRecord(parsed.value) && isRecord(parsed.value.error) ? parsed.value.error : undefined;
  const statusName = typeof error?.status === 'string' ? error.status : `HTTP ${status}`;
  const message = `gemini ${status} ${statusName}: ${snippet(typeof error?.message === 'string' ? error.message : text)}`;
  const retryAfterMs = retryDelayMs(error?.details) ?? parseRetryAfterMs(retryAfterHeader, nowMs);
  if (status === 429) {
    const daily = dailyQuotaId(error?.details);
    if (daily) {
      const resetAt = nextPacificMidnightMs(nowMs);
      return {
        kind: 'rate_limited',
        message,
        retryAfterMs: resetAt - nowMs,
        rest: `daily quota ${daily} exhausted; resets at midnight Pacific time (${new Date(resetAt).toISOString()})`,
      };
    }
    return { kind: 'rate_limited', message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  }
  if (isRetryableStatus(status))
    return { kind: 'transient', message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
  const reason =
    errorInfoReason(error?.details) ?? (typeof error?.status === 'string' ? error.status : `http_${status}`);
  return { kind: 'permanent', message, reason: reason.toLowerCase() };
}

/** Classifies a 200 generateContent body: images, a block, or an answer without pictures. */
export async function classifyGeminiBody(body: unknown, count: number): Promise<ProviderOutcome> {
  if (!isRecord(body)) return { kind: 'transient', message: 'gemini: response body is not a JSON object' };
  const feedback = isRecord(body.promptFeedback) ? body.promptFeedback : undefined;
  if (typeof feedback?.blockReason === 'string') {
    return {
      kind: 'permanent',
      reason: 'refused',
      message: `gemini: prompt blocked (${feedback.blockReason})`,
    };
  }
  const candidates = Array.isArray(body.candidates) ? body.candidates.filter(isRecord) : [];
  const buffers: Buffer[] = [];
  const texts: string[] = [];
  const finishReasons: string[] = [];
  for (const candidate of candidates) {
    if (typeof candidate.finishReason === 'string') finishReasons.push(candidate.finishReason);
    const parts =
      isRecord(candidate.content) && Array.isArray(candidate.content.parts) ? candidate.content.parts : [];
    for (const part of parts) {
      if (!isRecord(part)) continue;
      if (typeof part.text === 'string' && part.thought !== true) texts.push(part.text);
      const inline = isRecord(part.inlineData)
        ? part.inlineData
        : isRecord(part.inline_data)
          ? part.inline_data
          : undefined;
      const mime = inline?.mimeType ?? inline?.mime_type;
      if (
        inline &&
        typeof inline.data === 'string' &&
        (typeof mime !== 'string' || mime.startsWith('image/'))
      ) {
        buffers.push(Buffer.from(inline.data, 'base64'));
      }
    }
  }
  if (buffers.length === 0) {
    const refusal = finishReasons.find((reason) => REFUSAL_REASONS.has(reason));
    if (refusal)
      return {
        kind: 'permanent',
        reason: 'refused',
        message: `gemini: generation stopped (finishReason ${refusal}), no image`,
      };
    const said = texts.length > 0 ? `; the model said: ${snippet(texts.join(' '), 160)}` : '';
    return {
      kind: 'permanent',
      reason: 'no_image',
      message: `gemini: response has no image (finishReason ${finishReasons.join(',') || 'none'})${said}`,
    };
  }
  return decodeAll(buffers.slice(0, Math.max(1, count)), 'gemini');
}
