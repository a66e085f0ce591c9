/**
 * What darkroom knows about OpenAI's image models, and the start-up checks built on it.
 *
 * Source for every row: the official `openai` Node SDK 7.57.0, src/resources/images.ts
 * (github.com/openai/openai-node): the `ImageModel` union and its deprecation note, and the doc
 * comments of `ImageGenerateParamsBase` / `ImageEditParamsBase` (`n` "between 1 and 10",
 * `response_format` "Unsupported for GPT image models, which always return base64-encoded images",
 * `output_format` `png | webp | jpeg | gif | svg`, "SVG output requires n=1", the `quality` and
 * `size` values per model). Retired models stay in the table so that configuring one is refused by
 * name, with the SDK's replacement, instead of failing every call at run time.
 */

export type OpenAIOutputFormat = 'png' | 'jpeg' | 'webp' | 'gif' | 'svg';

/**
 * `standard`: `1024x1024`, `1536x1024`, `1024x1536` and `auto`. `flexible`: also any `WIDTHxHEIGHT`
 * with both sides divisible by 16, aspect ratio between 1:3 and 3:1, at most 3840x2160 pixels.
 */
export type OpenAISizeRule = 'standard' | 'flexible';

export interface OpenAIImageModel {
  id: string;
  /** `shut_down` / `retired` (the SDK's words): the API no longer serves the model; a config naming it is refused. */
  status: 'current' | 'shut_down' | 'retired';
  /** When it stopped answering, and what the SDK says to use instead. */
  ended?: { on: string; useInstead: string };
  /** Upper bound of `n`: how many images one request may return. */
  maxImagesPerRequest: number;
  /** `response_format` (url | b64_json) is a retired-model parameter; GPT image models answer 400. */
  acceptsResponseFormat: boolean;
  /** Legacy `style` (vivid | natural): likewise unsupported for GPT image models. */
  acceptsStyle: boolean;
  outputFormats: readonly OpenAIOutputFormat[];
  /** `input_fidelity` values (edits); `[]`: "omit this parameter"; undefined: the SDK does not say. */
  inputFidelity?: readonly string[];
  sizes: OpenAISizeRule;
  qualities: readonly string[];
}

/** `n` "Must be between 1 and 10" for generations and edits alike. */
export const OPENAI_MAX_N = 10;

/** The model darkroom sends when a provider of type openai names none: the SDK's documented default. */
export const DEFAULT_OPENAI_IMAGE_MODEL = 'gpt-image-2';

/**
 * The model id `darkroom fake-provider` serves for darkroom's own `sim` providers: not an OpenAI
 * model, so it keeps the simulator's loose rules (any size up to 4096, `url` results).
 */
export const SIMULATOR_IMAGE_MODEL = 'darkroom-sim';

const FORMATS: readonly OpenAIOutputFormat[] = ['png', 'jpeg', 'webp', 'gif', 'svg'];
const QUALITIES = ['low', 'medium', 'high', 'auto'] as const;
// "gpt-image-2.5-sunburst and gpt-image-2.5-flare, including their 2026-09-08 snapshots, also support xhigh and max."
const QUALITIES_2_5 = [...QUALITIES, 'xhigh', 'max'] as const;

function gptImage(
  id: string,
  sizes: OpenAISizeRule,
  qualities: readonly string[],
  inputFidelity?: readonly string[],
): OpenAIImageModel {
  return {
    id,
    status: 'current',
    maxImagesPerRequest: OPENAI_MAX_N,
    acceptsResponseFormat: false,
    acceptsStyle: false,
    outputFormats: FORMATS,
    ...(inputFidelity ? { inputFidelity } : {}),
    sizes,
    qualities,
  };
}

function ended(
  id: string,
  status: 'shut_down' | 'retired',
  on: string,
  useInstead: string,
): OpenAIImageModel {
  return {
    id,
    status,
    ended: { on, useInstead },
    maxImagesPerRequest: 0,
    acceptsResponseFormat: false,
    acceptsStyle: false,
    outputFormats: [],
    sizes: 'standard',
    qualities: [],
  };
}

const MODELS: readonly OpenAIImageModel[] = [
  // input_fidelity: "Supports high and low on gpt-image-1.5; gpt-image-1-mini supports only low.
  // For gpt-image-2, omit this parameter."
  gptImage('gpt-image-1-mini', 'standard', QUALITIES, ['low']),
  gptImage('gpt-image-1.5', 'standard', QUALITIES, ['high', 'low']),
  gptImage('chatgpt-image-latest', 'standard', QUALITIES),
  // Arbitrary WIDTHxHEIGHT is documented for gpt-image-2, its snapshot, and the 2.5 family only.
  gptImage('gpt-image-2', 'flexible', QUALITIES, []),
  gptImage('gpt-image-2-2026-04-21', 'flexible', QUALITIES, []),
  gptImage('gpt-image-2.5-sunburst', 'flexible', QUALITIES_2_5),
  gptImage('gpt-image-2.5-sunburst-2026-09-08', 'flexible', QUALITIES_2_5),
  gptImage('gpt-image-2.5-flare', 'flexible', QUALITIES_2_5),
  gptImage('gpt-image-2.5-flare-2026-09-08', 'flexible', QUALITIES_2_5),
  gptImage('gpt-image-2.6-sunburst', 'standard', QUALITIES),
  gptImage('gpt-image-2.6-flare', 'standard', QUALITIES),
  // "gpt-image-1": GPT Image 1 was shut down on October 23, 2026. Use gpt-image-2.5-sunburst or gpt-image-2.5-flare instead.
  ended('gpt-image-1', 'shut_down', '2026-10-23', 'gpt-image-2.5-sunburst or gpt-image-2.5-flare'),
  // "dall-e-2", "dall-e-3": This model was retired on May 12, 2026. Use a GPT image model instead.
  ended('dall-e-2', 'retired', '2026-05-12', 'a GPT image model'),
  ended('dall-e-3', 'retired', '2026-05-12', 'a GPT image model'),
];

const BY_ID = new Map(MODELS.map((model) => [model.id, model]));

export function openAIImageModels(): readonly OpenAIImageModel[] {
  return MODELS;
}

/** The table's row for a model id, or undefined for ids OpenAI does not document (relays' own names). */
export function findOpenAIImageModel(id: string): OpenAIImageModel | undefined {
  return BY_ID.get(id);
}

/** Standard sizes every GPT image model takes (besides `auto`). */
export const STANDARD_SIZES = ['1024x1024', '1536x1024', '1024x1536'] as const;

// "the maximum supported resolution is 3840x2160"; a floor of 655,360 pixels is what the API enforces
// in practice (docs.apiyi.com/en/live/2026-11/gpt-image-2-6-gif-size-table measured it; the SDK only
// says "the model's current pixel and edge limits").
export const FLEXIBLE_MAX_EDGE = 3840;
export const FLEXIBLE_MAX_PIXELS = 3840 * 2160;
export const FLEXIBLE_MIN_PIXELS = 655_360;

/** Why a `size` is not accepted by a model's size rule, or undefined when it is. */
export function sizeProblem(size: string, rule: OpenAISizeRule): string | undefined {
  if (size === 'auto' || (STANDARD_SIZES as readonly string[]).includes(size)) return undefined;
  if (rule === 'standard')
    return `supported values are ${STANDARD_SIZES.map((s) => `'${s}'`).join(', ')} and 'auto'`;
  const match = /^(\d{1,5})x(\d{1,5})$/.exec(size);
  if (!match) return "expected 'auto' or WIDTHxHEIGHT, e.g. '1536x864'";
  const width = Number(match[1]);
  const height = Number(match[2]);
  if (width % 16 !== 0 || height % 16 !== 0) return 'width and height must both be divisible by 16';
  if (Math.max(width, height) > 3 * Math.min(width, height))
    return 'the aspect ratio must be between 1:3 and 3:1';
  if (Math.max(width, height) > FLEXIBLE_MAX_EDGE || width * height > FLEXIBLE_MAX_PIXELS)
    return 'the maximum supported resolution is 3840x2160';
  if (width * height < FLEXIBLE_MIN_PIXELS) return `at least ${FLEXIBLE_MIN_PIXELS} pixels are required`;
  return undefined;
}

/** The parameters a model never accepts and the adapter therefore never sends to it. */
export function unsupportedParams(model: string): readonly string[] {
  const known = findOpenAIImageModel(model);
  if (!known) return [];
  return [
    ...(known.acceptsResponseFormat ? [] : ['response_format']),
    ...(known.acceptsStyle ? [] : ['style']),
  ];
}

export interface OpenAIProviderCheck {
  /** Start-up refusals, each naming the config field. */
  problems: string[];
  /** Things worth saying at start-up that do not stop the server. */
  warnings: string[];
}

/**
 * Start-up checks of one provider of type openai: a shut-down model is refused, an unknown id
 * (a relay's own name) needs `maxImagesPerRequest` to batch, parameters the model refuses are
 * refused here rather than as a 400 on every call.
 */
export function checkOpenAIProvider(
  where: string,
  provider: {
    model?: string | undefined;
    baseUrl?: string | undefined;
    maxImagesPerRequest?: number | undefined;
    params: Record<string, unknown>;
  },
  stepParams: ReadonlyArray<{ where: string; params: Record<string, unknown>; batchSize?: number }> = [],
): OpenAIProviderCheck {
  const problems: string[] = [];
  const warnings: string[] = [];
  const model = provider.model ?? DEFAULT_OPENAI_IMAGE_MODEL;
  const known = findOpenAIImageModel(model);
  if (known?.ended) {
    problems.push(
      `${where}.model: "${model}" was ${known.status === 'retired' ? 'retired' : 'shut down'} by OpenAI on ${known.ended.on}; use ${known.ended.useInstead}` +
        ` (current models: ${currentModelIds().join(', ')})`,
    );
    return { problems, warnings };
  }
  const max = provider.maxImagesPerRequest;
  if (!known && isOpenAIItself(provider.baseUrl) && max === undefined) {
    // OpenAI itself would answer 404 model_not_found to every call; a model newer than this table is
    // still usable by stating its batch size.
    problems.push(
      `${where}.model: "${model}" is not an OpenAI image model (current: ${currentModelIds().join(', ')});` +
        ` for a relay's own model set ${where}.baseUrl to the relay, for a model newer than darkroom set ${where}.maxImagesPerRequest`,
    );
    return { problems, warnings };
  }
  if (!known) {
    warnings.push(
      `${where}.model: "${model}" is not an OpenAI image model darkroom knows (a relay's own name?);` +
        ` each request asks for at most ${max ?? 1} image(s)` +
        (max === undefined ? ` (set ${where}.maxImagesPerRequest if it returns several)` : ''),
    );
  } else if (max !== undefined && max > known.maxImagesPerRequest) {
    problems.push(
      `${where}.maxImagesPerRequest: ${model} returns at most ${known.maxImagesPerRequest} images per request (n), got ${max}`,
    );
  }
  const refused = unsupportedParams(model);
  for (const { where: at, params } of [
    { where: `${where}.params`, params: provider.params },
    ...stepParams,
  ]) {
    for (const name of refused) {
      if (params[name] !== undefined)
        problems.push(
          `${at}.${name}: ${model} does not accept ${name} (GPT image models always answer b64_json); remove it`,
        );
    }
    const format = params.output_format;
    if (known && format !== undefined && !known.outputFormats.includes(format as OpenAIOutputFormat))
      problems.push(
        `${at}.output_format: ${model} returns ${known.outputFormats.join(', ')}; got ${JSON.stringify(format)}`,
      );
    const size = params.size;
    if (known && typeof size === 'string') {
      const problem = sizeProblem(size, known.sizes);
      if (problem) problems.push(`${at}.size: "${size}" is not a size ${model} accepts: ${problem}`);
    }
    const quality = params.quality;
    if (known && quality !== undefined && !known.qualities.includes(String(quality)))
      problems.push(
        `${at}.quality: ${model} accepts ${known.qualities.join(', ')}; got ${JSON.stringify(quality)}`,
      );
    const fidelity = params.input_fidelity;
    if (known?.inputFidelity && fidelity !== undefined && !known.inputFidelity.includes(String(fidelity)))
      problems.push(
        known.inputFidelity.length === 0
          ? `${at}.input_fidelity: ${model} takes no input_fidelity (the SDK: "omit this parameter"); remove it`
          : `${at}.input_fidelity: ${model} accepts ${known.inputFidelity.join(', ')}; got ${JSON.stringify(fidelity)}`,
      );
  }
  // Batches are split by the provider's params (capabilities.ts); an svg step would send n > 1.
  for (const step of stepParams) {
    if (
      step.params.output_format === 'svg' &&
      provider.params.output_format !== 'svg' &&
      (step.batchSize ?? 1) > 1
    )
      problems.push(
        `${step.where}.output_format: svg output takes one image per request ("SVG output requires n=1"); give this step batchSize 1, or set output_format: svg in ${where}.params`,
      );
  }
  return { problems, warnings };
}

/** No baseUrl means OpenAI's own API. */
function isOpenAIItself(baseUrl: string | undefined): boolean {
  if (baseUrl === undefined) return true;
  try {
    return new URL(baseUrl).hostname === 'api.openai.com';
  } catch {
    return false;
  }
}

export function currentModelIds(): string[] {
  return MODELS.filter((model) => model.status === 'current').map((model) => model.id);
}
