/**
 * OpenAI Images API and compatible relays: `POST /v1/images/generations` (JSON) for text-only calls,
 * `POST /v1/images/edits` (multipart, `image` or `image[]`) when the call has input images.
 * `count` images are asked for as `n` in one request; the scheduler keeps `count` within the model's
 * `n` bound (src/providers/openai-models.ts).
 */
import { Blob } from 'node:buffer';
import { fetch, FormData } from 'undici';
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
import { unsupportedParams } from './openai-models.ts';
import { downloadResultUrl } from '../inputs/result-url.ts';
import type { ProviderAdapter, ProviderCall, ProviderOutcome } from './types.ts';

export interface OpenAIProviderOptions {
  /** Default https://api.openai.com (the adapter appends /v1/images/...). */
  baseUrl?: string;
  /** Always sent: the SDK says to name a model explicitly (e.g. gpt-image-2, or a relay's own id). */
  model: string;
  /** e.g. 1024x1024; omitted when unset. */
  size?: string;
  /** For relays and the simulator only: never sent to GPT image models, which answer 400 to it. */
  responseFormat?: 'url' | 'b64_json';
  timeoutMs: number;
}

/** How long an exhausted-quota key (429 insufficient_quota) rests when the answer names no time. */
const QUOTA_COOLDOWN_MS = 15 * 60_000;

/** The longest retry-after the SDK obeys on a retryable error (openai-node src/client.ts `retryRequest`). */
const MAX_ERROR_RETRY_HINT_MS = 60_000;

const REFUSAL_CODES = new Set(['content_policy_violation', 'moderation_blocked']);

export function createOpenAIProvider(options: OpenAIProviderOptions): ProviderAdapter {
  const baseUrl = (options.baseUrl ?? 'https://api.openai.com').replace(/\/+$/, '');
  return {
    type: 'openai',
    call: guardAdapter('openai', (call) => callOpenAI(baseUrl, options, call)),
  };
}

const EXTENSION_BY_MIME: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
};

/** The API's own optional fields a provider's, step's or task's params may set (SDK 7.57 ImageGenerateParams). */
const PASS_THROUGH_PARAMS = [
  'size',
  'quality',
  'style',
  'background',
  'output_format',
  'output_compression',
  'response_format',
  'moderation',
  'input_fidelity',
  'complexity',
  'frame_count',
  'frame_duration_ms',
] as const;

function generationRequest(
  options: OpenAIProviderOptions,
  call: ProviderCall,
): { path: string; body: string | FormData; headers: Record<string, string> } {
  // The step's or task's params may set the API's own optional fields (size, quality, …).
  const passThrough: Record<string, string | number> = {};
  for (const name of PASS_THROUGH_PARAMS) {
    const value = call.params[name];
    if (typeof value === 'string' || typeof value === 'number') passThrough[name] = value;
  }
  const fields: Record<string, string | number> = {
    model: options.model,
    ...(options.size ? { size: options.size } : {}),
    ...(options.responseFormat ? { response_format: options.responseFormat } : {}),
    ...passThrough,
    prompt: call.prompt,
    n: call.count,
  };
  // Start-up checks refuse these in config; a task's own params could still carry them.
  for (const name of unsupportedParams(options.model)) delete fields[name];
  if (call.inputs.length === 0) {
    return {
      path: '/v1/images/generations',
      body: JSON.stringify(fields),
      headers: { 'content-type': 'application/json' },
    };
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, String(value));
  // `image` takes one file (every model); several go as `image[]` (gpt-image models).
  const field = call.inputs.length === 1 ? 'image' : 'image[]';
  for (const [index, input] of call.inputs.entries()) {
    const extension = EXTENSION_BY_MIME[input.mime] ?? 'png';
    form.append(
      field,
      new Blob([input.data], { type: input.mime }),
      `${input.role}-${index + 1}.${extension}`,
    );
  }
  return { path: '/v1/images/edits', body: form, headers: {} };
}

async function callOpenAI(
  baseUrl: string,
  options: OpenAIProviderOptions,
  call: ProviderCall,
): Promise<ProviderOutcome> {
  const deadline = new Deadline(call.signal, options.timeoutMs);
  const request = generationRequest(options, call);
  try {
    const response = await fetch(`${baseUrl}${request.path}`, {
      method: 'POST',
      headers: { ...request.headers, authorization: `Bearer ${credentialOf(call.key)}` },
      body: request.body,
      signal: deadline.signal,
    });
    const text = await response.text();
    if (!response.ok) return classifyOpenAIError(response.status, text, response.headers);
    const parsed = parseJsonText(text);
    if (!parsed.ok)
      return {
        kind: 'transient',
        message: `openai: malformed JSON in a ${response.status} response: ${snippet(text, 120)}`,
      };
    const data =
      isRecord(parsed.value) && Array.isArray(parsed.value.data) ? parsed.value.data.filter(isRecord) : [];
    if (data.length === 0)
      return { kind: 'permanent', reason: 'no_image', message: 'openai: response has no image' };
    const items = data.slice(0, Math.max(1, call.count));
    if (items.some((item) => typeof item.b64_json !== 'string' && typeof item.url !== 'string'))
      return {
        kind: 'permanent',
        reason: 'no_image',
        message: 'openai: result item has neither b64_json nor url',
      };
    // Result URLs expire: fetch them now (all at once), through the SSRF guard, and never send the
    // key to wherever they point.
    const results = await Promise.all(
      items.map((item) =>
        typeof item.b64_json === 'string'
          ? { ok: true as const, data: Buffer.from(item.b64_json, 'base64') }
          : downloadResultUrl(item.url as string, {
              trustedOrigin: baseUrl,
              timeoutMs: options.timeoutMs,
              signal: deadline.signal,
            }),
      ),
    );
    const buffers: Buffer[] = [];
    for (const download of results) {
      if (!download.ok)
        return download.forbidden
          ? { kind: 'permanent', reason: 'result_url_forbidden', message: `openai: ${download.message}` }
          : { kind: 'transient', message: `openai: result download failed: ${download.message}` };
      buffers.push(download.data);
    }
    // An SVG is only taken from a request that asked for one (or an answer that says it is one).
    const format = isRecord(parsed.value) ? parsed.value.output_format : undefined;
    const allowSvg = call.params.output_format === 'svg' || format === 'svg';
    call.onAnswered?.();
    return await decodeAll(buffers, 'openai', { allowSvg });
  } catch (error) {
    return outcomeForThrown(error, deadline, `openai ${request.path}`);
  } finally {
    deadline.dispose();
  }
}

/**
 * The retry instruction of an answer: `retry-after-ms`, else `retry-after` (seconds or an HTTP date).
 * These are the only headers the official SDK's retry logic reads (openai-node src/client.ts,
 * `retryRequest`; without them it backs off on its own, `calculateDefaultRetryTimeoutMillis`).
 */
export function openAIRetryAfterMs(
  headers: { get(name: string): string | null },
  now: number = Date.now(),
): number | undefined {
  const precise = Number(headers.get('retry-after-ms'));
  if (headers.get('retry-after-ms') !== null && Number.isFinite(precise) && precise >= 0)
    return Math.ceil(precise);
  return parseRetryAfterMs(headers.get('retry-after'), now);
}

/**
 * When an exhausted rate limit refills: `x-ratelimit-reset-*` of a limit whose `x-ratelimit-remaining-*`
 * is 0. Those headers describe the limit, not the answer (OpenAI sends them on every response,
 * successes too), so they only explain a 429, and only for the limit that ran out.
 */
export function openAIExhaustedLimitResetMs(headers: {
  get(name: string): string | null;
}): number | undefined {
  const resets = (['requests', 'tokens'] as const)
    .filter((limit) => headers.get(`x-ratelimit-remaining-${limit}`) === '0')
    .map((limit) => parseDurationMs(headers.get(`x-ratelimit-reset-${limit}`)))
    .filter((ms): ms is number => ms !== undefined);
  return resets.length > 0 ? Math.max(...resets) : undefined;
}

/** Classifies a non-2xx answer (`{ error: { message, type, param, code } }`). */
export function classifyOpenAIError(
  status: number,
  text: string,
  headers: { get(name: string): string | null },
): ProviderOutcome {
  const parsed = parseJsonText(text);
  const error =
    parsed.ok && isRecord(parsed.value) && isRecord(parsed.value.error) ? parsed.value.error : undefined;
  const code = typeof error?.code === 'string' ? error.code : undefined;
  const message = `openai ${status}${code ? ` ${code}` : ''}: ${snippet(typeof error?.message === 'string' ? error.message : text)}`;
  const retryAfterMs = openAIRetryAfterMs(headers);
  if (status === 429) {
    // An exhausted balance is no per-minute limit, but resting the key is still right: other keys may work.
    const wait =
      retryAfterMs ??
      openAIExhaustedLimitResetMs(headers) ??
      (code === 'insufficient_quota' ? QUOTA_COOLDOWN_MS : undefined);
    return { kind: 'rate_limited', message, ...(wait !== undefined ? { retryAfterMs: wait } : {}) };
  }
  if (code && REFUSAL_CODES.has(code)) return { kind: 'permanent', reason: 'refused', message };
  // Like the SDK's retryRequest, a hint over 60 s on an error is not obeyed: darkroom's own backoff applies.
  if (isRetryableStatus(status))
    return {
      kind: 'transient',
      message,
      ...(retryAfterMs !== undefined && retryAfterMs <= MAX_ERROR_RETRY_HINT_MS ? { retryAfterMs } : {}),
    };
  const reason = status === 401 ? 'invalid_key' : (code ?? `http_${status}`);
  return { kind: 'permanent', reason, message };
}
