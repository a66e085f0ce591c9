/**
 * What a submit's `params` may say. They are merged into every provider call of the task
 * (over the provider's and the step's own params), so an unchecked record would let a caller
 * pick a paid API's size and quality, render 4096² images on a fixed-price plan, or fill any
 * ComfyUI workflow placeholder. Each provider declares the names a task may set, with bounds
 * (`providers.<name>.taskParams`, else the built-in list of its type below); anything else is
 * refused with a 400 naming the field, before anything is stored or charged.
 */
import type { Config } from '../config/load.ts';
import type { TaskParamSpec } from '../config/schema.ts';
import { AppError } from '../errors.ts';

/** The serialized `params` of one task, at most. */
export const MAX_PARAMS_BYTES = 16 * 1024; // 16 KiB

/** Every task may fix its seed (reproducible runs and result-cache hits). */
const SEED: TaskParamSpec = { type: 'integer', min: 0, max: 2 ** 32 - 1 };

/**
 * Built-in per provider type. Cost-bearing parameters (OpenAI `size`/`quality`, Gemini
 * `imageSize`) are absent on purpose: an operator lists them in `taskParams` (or fixes them in
 * the provider's or step's `params`) when a plan's price covers them.
 */
export const DEFAULT_TASK_PARAMS: Record<string, Record<string, TaskParamSpec>> = {
  // The simulator renders what it is asked; 1024² is twice the default 512 on each side.
  sim: {
    width: { type: 'integer', min: 16, max: 1024 },
    height: { type: 'integer', min: 16, max: 1024 },
  },
  // https://developers.openai.com/api/reference/resources/images/methods/generate
  // (`style` is dall-e-3's only; GPT image models, the default, refuse it: opt in with taskParams.)
  openai: {
    background: { type: 'oneOf', values: ['auto', 'transparent', 'opaque'] },
    output_format: { type: 'oneOf', values: ['png', 'jpeg', 'webp'] },
  },
  // https://ai.google.dev/api/generate-content#ImageConfig (aspectRatio)
  gemini: {
    aspectRatio: {
      type: 'oneOf',
      values: ['1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9'],
    },
  },
  // A workflow's own placeholders are the operator's to open up.
  comfyui: {},
};

function allowedFor(config: Config, provider: string): Record<string, TaskParamSpec> {
  const p = config.providers[provider];
  if (!p) return {};
  return p.taskParams ?? DEFAULT_TASK_PARAMS[p.type] ?? {};
}

/** Why `value` does not fit `spec`, or undefined when it does. */
function misfit(spec: TaskParamSpec, value: unknown): string | undefined {
  switch (spec.type) {
    case 'integer':
      return Number.isInteger(value) && (value as number) >= spec.min && (value as number) <= spec.max
        ? undefined
        : `must be an integer from ${spec.min} to ${spec.max}`;
    case 'number':
      return typeof value === 'number' && value >= spec.min && value <= spec.max
        ? undefined
        : `must be a number from ${spec.min} to ${spec.max}`;
    case 'string':
      return typeof value === 'string' && value.length <= spec.maxLength
        ? undefined
        : `must be a string of at most ${spec.maxLength} characters`;
    case 'oneOf':
      return spec.values.includes(value as string | number)
        ? undefined
        : `must be one of ${spec.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'boolean':
      return typeof value === 'boolean' ? undefined : 'must be true or false';
  }
}

/**
 * Checks a submit's `params` for task type `type` (pure). A name must be allowed by at least one
 * provider of the pipeline, and its value must fit the bounds of every provider that lists it.
 * Throws AppError `validation_failed` naming the first bad field.
 */
export function checkTaskParams(config: Config, type: string, params: Record<string, unknown>): void {
  const names = Object.keys(params);
  if (names.length === 0) return;
  const size = Buffer.byteLength(JSON.stringify(params));
  if (size > MAX_PARAMS_BYTES) {
    throw new AppError('validation_failed', `params: ${size} bytes as JSON, more than ${MAX_PARAMS_BYTES}`);
  }
  const pipeline = config.pipelines[type]!;
  const providers = [...new Set(pipeline.steps.flatMap((s) => (s.provider ? [s.provider] : [])))];
  const lists = providers.map((p) => allowedFor(config, p));
  for (const name of names) {
    const specs = [
      ...(name === 'seed' ? [SEED] : []),
      ...lists.flatMap((list) => (Object.hasOwn(list, name) ? [list[name]!] : [])),
    ];
    if (specs.length === 0) {
      const allowed = ['seed', ...new Set(lists.flatMap((list) => Object.keys(list)))].sort();
      throw new AppError(
        'validation_failed',
        `params.${name}: not a parameter task type "${type}" takes; allowed: ${allowed.join(', ')}`,
      );
    }
    for (const spec of specs) {
      const problem = misfit(spec, params[name]);
      if (problem) throw new AppError('validation_failed', `params.${name}: ${problem}`);
    }
  }
}
