/**
 * What a provider's model can do per request, resolved from its configuration (pure). The
 * scheduler's request accounting rests on it: a job of `count` images costs
 * `requestsFor(count, maxImagesPerRequest)` requests against its key's RPM window and in-flight
 * limit and against the provider's concurrency, because the adapter makes that many calls.
 */

import { DEFAULT_OPENAI_IMAGE_MODEL, findOpenAIImageModel } from './openai-models.ts';

/** No limit: the backend returns a whole batch from one request. */
export const UNLIMITED = Number.POSITIVE_INFINITY;

/** `darkroom fake-provider` speaks the OpenAI images wire format to sim providers: `n` is 1…10 there. */
const SIM_OVER_HTTP_MAX_N = 10;

export interface CapabilityInput {
  type: 'sim' | 'gemini' | 'openai' | 'comfyui';
  model?: string | undefined;
  baseUrl?: string | undefined;
  /** The provider's params: OpenAI's `output_format: svg` allows one image per request. */
  params?: Record<string, unknown> | undefined;
  /** The operator's override; may lower the model's limit, never raise it. */
  maxImagesPerRequest?: number | undefined;
}

export interface ProviderCapabilities {
  /** Images one request can return; UNLIMITED when the backend batches natively without a cap. */
  maxImagesPerRequest: number;
  /** Where the limit comes from, for error messages and docs. */
  source: string;
}

/**
 * The model's own limit, before any override; undefined when darkroom has no facts for it (the
 * override then decides, default 1).
 *
 * - gemini: the image models (gemini-2.5-flash-image, gemini-3-pro-image-preview, …) refuse
 *   `generationConfig.candidateCount` > 1 with 400 INVALID_ARGUMENT "Multiple candidates is not
 *   enabled for models/…" (google-gemini/gemini-cli#10370); darkroom's Gemini adapter only
 *   generates images, so every Gemini model counts as one image per request.
 * - sim in-process: one call returns the whole batch; over HTTP the simulator's OpenAI-style `n`
 *   is capped at 10 (src/providers/fake-server/openai.ts).
 * - comfyui: the workflow's `{{batch_size}}` renders the whole batch in one prompt.
 * - openai: src/providers/openai-models.ts: a current GPT image model takes `n` up to 10 (1 for SVG
 *   output); a model id it does not know (a relay's) has no facts, so the operator's
 *   `maxImagesPerRequest` (default 1) decides.
 */
export function modelMaxImagesPerRequest(input: CapabilityInput): number | undefined {
  switch (input.type) {
    case 'gemini':
      return 1;
    case 'sim':
      return input.baseUrl ? SIM_OVER_HTTP_MAX_N : UNLIMITED;
    case 'comfyui':
      return UNLIMITED;
    case 'openai': {
      if (input.params?.output_format === 'svg') return 1;
      const known = findOpenAIImageModel(input.model ?? DEFAULT_OPENAI_IMAGE_MODEL);
      return known?.status === 'current' ? known.maxImagesPerRequest : undefined;
    }
  }
}

/** The limit darkroom works with: the model's, lowered by the override when one is set. */
export function resolveCapabilities(input: CapabilityInput): ProviderCapabilities {
  const model = modelMaxImagesPerRequest(input);
  const override = input.maxImagesPerRequest;
  if (model === undefined)
    return override !== undefined
      ? { maxImagesPerRequest: override, source: 'maxImagesPerRequest' }
      : { maxImagesPerRequest: 1, source: `default for ${input.type} without model facts` };
  if (override !== undefined && override < model)
    return { maxImagesPerRequest: override, source: 'maxImagesPerRequest' };
  return { maxImagesPerRequest: model, source: describeModel(input) };
}

/**
 * Start-up check of the override against the model: an override above what the model supports
 * would be a 400 at run time. Returns a problem message naming the field, or undefined.
 */
export function checkCapabilityOverride(input: CapabilityInput, where: string): string | undefined {
  // openai-models.ts checks OpenAI overrides against its table (checkOpenAIProvider).
  if (input.type === 'openai') return undefined;
  const override = input.maxImagesPerRequest;
  const model = modelMaxImagesPerRequest(input);
  if (override === undefined || model === undefined || override <= model) return undefined;
  return `${where}.maxImagesPerRequest: ${override} is more than ${describeModel(input)} supports (${model} image${model === 1 ? '' : 's'} per request)`;
}

/** Requests a job of `count` images makes: one per `maxImagesPerRequest` images, at least one. */
export function requestsFor(count: number, maxImagesPerRequest: number): number {
  return Math.max(1, Math.ceil(Math.max(1, count) / Math.max(1, maxImagesPerRequest)));
}

function describeModel(input: CapabilityInput): string {
  if (input.type === 'gemini')
    return `Gemini model ${geminiModelResource(input.model ?? DEFAULT_GEMINI_MODEL)}`;
  if (input.type === 'sim') return input.baseUrl ? 'the simulator over HTTP' : 'the in-process simulator';
  return input.model ? `${input.type} model ${input.model}` : `provider type ${input.type}`;
}

export const DEFAULT_GEMINI_MODEL = 'gemini-2.5-flash-image';

/**
 * A Gemini model id as the resource name in the request path, as @google/genai's `tModel` builds it
 * for the Gemini API (node_modules/@google/genai/dist/node/index.mjs, `tModel`; googleapis/js-genai
 * src/_transformers.ts): `models/…` and `tunedModels/…` stay as they are, a bare id gets `models/`.
 * The path is then `{model}:generateContent`, with the slash unencoded.
 */
export function geminiModelResource(model: string): string {
  const trimmed = model.trim();
  return trimmed.startsWith('models/') || trimmed.startsWith('tunedModels/') ? trimmed : `models/${trimmed}`;
}
