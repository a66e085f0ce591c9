/**
 * How the simulated OpenAI Images API reads and refuses a request, per model, as the real API does.
 *
 * The rules come from src/providers/openai-models.ts (the SDK's own documentation); the error
 * bodies are the ones the real API sends, as quoted in public reports:
 * - unknown or shut-down model: 404 `model_not_found`, "The model `x` does not exist or you do not
 *   have access to it." (e.g. github.com/jdmnk/codex-imagegen-cli/issues/18);
 * - `response_format` to a GPT image model: 400 `unknown_parameter`, "Unknown parameter:
 *   'response_format'." (github.com/vercel/ai/issues/6102, github.com/lofcz/LLMTornado/issues/155);
 * - integer bounds: 400 `integer_above_max_value` / `integer_below_min_value`;
 * - enum values (`size`, `quality`, `output_format`): 400 `invalid_value`.
 */
import { json, type Reply } from './http.ts';
import { MAX_FAKE_SIDE } from './images.ts';
import {
  findOpenAIImageModel,
  OPENAI_MAX_N,
  SIMULATOR_IMAGE_MODEL,
  sizeProblem,
  type OpenAIImageModel,
  type OpenAIOutputFormat,
} from '../openai-models.ts';

export function openaiError(
  status: number,
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
  headers: Record<string, string | number> = {},
): Reply {
  return json(status, { error: { message, type, param, code } }, headers);
}

function invalid(message: string, param: string, code: string | null = 'invalid_value'): Reply {
  return openaiError(400, message, 'invalid_request_error', code, param);
}

export interface ImagesRequest {
  model: string;
  /** A GPT image model: base64 only, echoes size/quality/format and reports usage. */
  gpt: boolean;
  prompt: string;
  n: number;
  width: number;
  height: number;
  responseFormat: 'url' | 'b64_json';
  outputFormat: OpenAIOutputFormat;
  /** What the answer reports: `auto` resolved. */
  quality: string;
  background: 'transparent' | 'opaque';
  frameCount: number;
}

/** Fields as they arrive, from JSON or multipart (where every value is a string). */
export interface RawImagesFields {
  prompt: unknown;
  n: unknown;
  size: unknown;
  response_format: unknown;
  model: unknown;
  output_format: unknown;
  quality: unknown;
  style: unknown;
  background: unknown;
  frame_count: unknown;
  input_fidelity: unknown;
}

const present = (value: unknown): boolean => value !== undefined && value !== null && value !== '';

function modelNotFound(model: string): Reply {
  return openaiError(
    404,
    `The model \`${model}\` does not exist or you do not have access to it.`,
    'invalid_request_error',
    'model_not_found',
  );
}

function readN(raw: unknown, max: number): number | Reply {
  const n = present(raw) ? Number(raw) : 1;
  if (!Number.isInteger(n))
    return invalid(`Invalid 'n': expected an integer, but got ${String(raw)} instead.`, 'n', 'invalid_type');
  if (n < 1)
    return invalid(
      `Invalid 'n': integer below minimum value. Expected a value >= 1, but got ${n} instead.`,
      'n',
      'integer_below_min_value',
    );
  if (n > max)
    return invalid(
      `Invalid 'n': integer above maximum value. Expected a value <= ${max}, but got ${n} instead.`,
      'n',
      'integer_above_max_value',
    );
  return n;
}

/** Reads a request for one model, refusing what that model refuses. */
export function readImagesRequest(fields: RawImagesFields): ImagesRequest | Reply {
  // The SDK's 6.x docs: the model "Defaults to `dall-e-2`", which is now retired, so no model is a 404 too.
  const model = typeof fields.model === 'string' && fields.model !== '' ? fields.model : 'dall-e-2';
  if (model === SIMULATOR_IMAGE_MODEL) return readSimulatorRequest(fields);
  const known = findOpenAIImageModel(model);
  if (!known || known.status !== 'current') return modelNotFound(model);
  return readGptRequest(fields, known);
}

function readGptRequest(fields: RawImagesFields, model: OpenAIImageModel): ImagesRequest | Reply {
  if (typeof fields.prompt !== 'string' || fields.prompt.length === 0)
    return invalid("Missing required parameter: 'prompt'.", 'prompt', 'missing_required_parameter');
  for (const name of ['response_format', 'style'] as const) {
    if (present(fields[name])) return invalid(`Unknown parameter: '${name}'.`, name, 'unknown_parameter');
  }
  const n = readN(fields.n, model.maxImagesPerRequest);
  if (typeof n !== 'number') return n;
  const outputFormat = present(fields.output_format) ? String(fields.output_format) : 'png';
  if (!model.outputFormats.includes(outputFormat as OpenAIOutputFormat))
    return invalid(
      `Invalid value: '${outputFormat}'. Supported values are: ${model.outputFormats.map((f) => `'${f}'`).join(', ')}.`,
      'output_format',
    );
  // "SVG output requires n=1" (ImageGenerateParams.svg).
  if (outputFormat === 'svg' && n !== 1)
    return invalid(`Invalid 'n': SVG output requires n=1, but got ${n} instead.`, 'n');
  const size = present(fields.size) ? String(fields.size) : 'auto';
  const problem = sizeProblem(size, model.sizes);
  if (problem) return invalid(`Invalid value: '${size}'. ${capitalize(problem)}.`, 'size');
  const [width, height] = size === 'auto' ? [1024, 1024] : size.split('x').map(Number);
  const quality = present(fields.quality) ? String(fields.quality) : 'auto';
  if (!model.qualities.includes(quality))
    return invalid(
      `Invalid value: '${quality}'. Supported values are: ${model.qualities.map((q) => `'${q}'`).join(', ')}.`,
      'quality',
    );
  const background = present(fields.background) ? String(fields.background) : 'auto';
  if (!['transparent', 'opaque', 'auto'].includes(background))
    return invalid(
      `Invalid value: '${background}'. Supported values are: 'transparent', 'opaque', and 'auto'.`,
      'background',
    );
  // "When using transparent, set the output format to png or webp."
  if (background === 'transparent' && outputFormat !== 'png' && outputFormat !== 'webp')
    return invalid(
      `Transparent background requires output_format 'png' or 'webp', got '${outputFormat}'.`,
      'background',
    );
  // input_fidelity: high/low on gpt-image-1.5, low on gpt-image-1-mini, "For gpt-image-2, omit this parameter."
  const fidelity = fields.input_fidelity;
  if (present(fidelity) && model.inputFidelity && !model.inputFidelity.includes(String(fidelity)))
    return invalid(
      model.inputFidelity.length === 0
        ? `'input_fidelity' is not supported for ${model.id}.`
        : `Invalid value: '${String(fidelity)}'. Supported values are: ${model.inputFidelity.map((v) => `'${v}'`).join(', ')}.`,
      'input_fidelity',
    );
  const frameCount = present(fields.frame_count) ? Number(fields.frame_count) : 9;
  // "Accepts integers from 2 through 16. Defaults to 9 when omitted. Only supported with output_format=gif."
  if (present(fields.frame_count) && outputFormat !== 'gif')
    return invalid("'frame_count' is only supported with output_format 'gif'.", 'frame_count');
  if (!Number.isInteger(frameCount) || frameCount < 2 || frameCount > 16)
    return invalid(
      `Invalid 'frame_count': expected an integer from 2 through 16, but got ${String(fields.frame_count)} instead.`,
      'frame_count',
    );
  return {
    model: model.id,
    gpt: true,
    prompt: fields.prompt,
    n,
    width: width ?? 1024,
    height: height ?? 1024,
    responseFormat: 'b64_json',
    outputFormat: outputFormat as OpenAIOutputFormat,
    quality: quality === 'auto' ? 'medium' : quality,
    background: background === 'transparent' ? 'transparent' : 'opaque',
    frameCount,
  };
}

/** darkroom's own `sim` providers: any size up to the simulator's limit, and `url` results. */
function readSimulatorRequest(fields: RawImagesFields): ImagesRequest | Reply {
  if (typeof fields.prompt !== 'string' || fields.prompt.length === 0)
    return invalid("Missing required parameter: 'prompt'.", 'prompt', 'missing_required_parameter');
  const n = readN(fields.n, OPENAI_MAX_N);
  if (typeof n !== 'number') return n;
  const size = !present(fields.size) || fields.size === 'auto' ? '1024x1024' : String(fields.size);
  const match = /^(\d{1,4})x(\d{1,4})$/.exec(size);
  const width = Number(match?.[1]);
  const height = Number(match?.[2]);
  if (!match || width < 1 || height < 1 || width > MAX_FAKE_SIDE || height > MAX_FAKE_SIDE)
    return invalid(
      `Invalid value: '${size}'. Expected WIDTHxHEIGHT up to ${MAX_FAKE_SIDE} pixels a side.`,
      'size',
    );
  const format = present(fields.response_format) ? String(fields.response_format) : 'b64_json';
  if (format !== 'url' && format !== 'b64_json')
    return invalid(
      `Invalid value: '${format}'. Supported values are: 'url' and 'b64_json'.`,
      'response_format',
    );
  const outputFormat = present(fields.output_format) ? String(fields.output_format) : 'png';
  if (!['png', 'jpeg', 'webp'].includes(outputFormat))
    return invalid(
      `Invalid value: '${outputFormat}'. Supported values are: 'png', 'jpeg' and 'webp'.`,
      'output_format',
    );
  return {
    model: SIMULATOR_IMAGE_MODEL,
    gpt: false,
    prompt: fields.prompt,
    n,
    width,
    height,
    responseFormat: format,
    outputFormat: outputFormat as OpenAIOutputFormat,
    quality: 'medium',
    background: 'opaque',
    frameCount: 9,
  };
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
