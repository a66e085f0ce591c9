/**
 * The simulated ComfyUI's node classes, machine and prompt validation, mirroring comfyanonymous/ComfyUI:
 * `GET /object_info` answers `node_info()` of server.py for each class, `GET /system_stats` its
 * `system_stats`, and `validatePrompt` follows
 * execution.py `validate_prompt`/`validate_inputs` (missing_node_type, prompt_no_outputs, then per-output
 * `prompt_outputs_failed_validation` with `node_errors` keyed by the node at fault).
 */
import { MAX_FAKE_SIDE } from './images.ts';

export type Workflow = Record<
  string,
  { class_type?: unknown; inputs?: Record<string, unknown>; _meta?: unknown }
>;

type InputSpec = [string | string[], Record<string, unknown>?];

interface NodeClass {
  required: Record<string, InputSpec>;
  output: string[];
  outputNode?: boolean;
  category: string;
}

// comfy/samplers.py KSampler.SAMPLERS / SCHEDULERS (the core set).
const SAMPLERS = [
  'euler',
  'euler_cfg_pp',
  'euler_ancestral',
  'euler_ancestral_cfg_pp',
  'heun',
  'heunpp2',
  'dpm_2',
  'dpm_2_ancestral',
  'lms',
  'dpm_fast',
  'dpm_adaptive',
  'dpmpp_2s_ancestral',
  'dpmpp_sde',
  'dpmpp_sde_gpu',
  'dpmpp_2m',
  'dpmpp_2m_sde',
  'dpmpp_2m_sde_gpu',
  'dpmpp_3m_sde',
  'dpmpp_3m_sde_gpu',
  'ddpm',
  'lcm',
  'ipndm',
  'ipndm_v',
  'deis',
  'ddim',
  'uni_pc',
  'uni_pc_bh2',
];
const SCHEDULERS = [
  'normal',
  'karras',
  'exponential',
  'sgm_uniform',
  'simple',
  'ddim_uniform',
  'beta',
  'linear_quadratic',
  'kl_optimal',
];

const INT = (min: number, max: number, value: number): InputSpec => ['INT', { default: value, min, max }];
const FLOAT = (min: number, max: number, value: number): InputSpec => ['FLOAT', { default: value, min, max }];
const SEED = INT(0, 2 ** 64 - 1, 0); // 0xffffffffffffffff in nodes.py
const SAMPLING: Record<string, InputSpec> = {
  model: ['MODEL'],
  positive: ['CONDITIONING'],
  negative: ['CONDITIONING'],
  latent_image: ['LATENT'],
  steps: INT(1, 10000, 20),
  cfg: FLOAT(0, 100, 8),
  sampler_name: [SAMPLERS],
  scheduler: [SCHEDULERS],
};

export const NODE_CLASSES: Record<string, NodeClass> = {
  CheckpointLoaderSimple: {
    required: { ckpt_name: ['STRING'] },
    output: ['MODEL', 'CLIP', 'VAE'],
    category: 'loaders',
  },
  LoraLoader: {
    required: {
      model: ['MODEL'],
      clip: ['CLIP'],
      lora_name: ['STRING'],
      strength_model: FLOAT(-100, 100, 1),
      strength_clip: FLOAT(-100, 100, 1),
    },
    output: ['MODEL', 'CLIP'],
    category: 'loaders',
  },
  CLIPTextEncode: {
    required: { text: ['STRING', { multiline: true }], clip: ['CLIP'] },
    output: ['CONDITIONING'],
    category: 'conditioning',
  },
  EmptyLatentImage: {
    required: {
      width: INT(16, MAX_FAKE_SIDE, 512),
      height: INT(16, MAX_FAKE_SIDE, 512),
      batch_size: INT(1, 4096, 1),
    },
    output: ['LATENT'],
    category: 'latent',
  },
  KSampler: {
    required: { ...SAMPLING, seed: SEED, denoise: FLOAT(0, 1, 1) },
    output: ['LATENT'],
    category: 'sampling',
  },
  KSamplerAdvanced: {
    required: {
      ...SAMPLING,
      add_noise: [['enable', 'disable']],
      noise_seed: SEED,
      start_at_step: INT(0, 10000, 0),
      end_at_step: INT(0, 10000, 10000),
      return_with_leftover_noise: [['disable', 'enable']],
    },
    output: ['LATENT'],
    category: 'sampling',
  },
  LatentUpscaleBy: {
    required: {
      samples: ['LATENT'],
      upscale_method: [['nearest-exact', 'bilinear', 'area', 'bicubic', 'bislerp']],
      scale_by: FLOAT(0.01, 8, 1.5),
    },
    output: ['LATENT'],
    category: 'latent',
  },
  VAEDecode: { required: { samples: ['LATENT'], vae: ['VAE'] }, output: ['IMAGE'], category: 'latent' },
  VAEEncode: { required: { pixels: ['IMAGE'], vae: ['VAE'] }, output: ['LATENT'], category: 'latent' },
  LoadImage: { required: { image: ['STRING'] }, output: ['IMAGE', 'MASK'], category: 'image' },
  SaveImage: {
    required: { images: ['IMAGE'], filename_prefix: ['STRING', { default: 'ComfyUI' }] },
    output: [],
    outputNode: true,
    category: 'image',
  },
  PreviewImage: { required: { images: ['IMAGE'] }, output: [], outputNode: true, category: 'image' },
};

/** server.py `node_info(node_class)` for one simulated class. */
export function nodeInfo(name: string): Record<string, unknown> | undefined {
  const node = NODE_CLASSES[name];
  if (!node) return undefined;
  return {
    input: { required: node.required },
    input_order: { required: Object.keys(node.required) },
    output: node.output,
    output_is_list: node.output.map(() => false),
    output_name: node.output,
    name,
    display_name: name,
    description: '',
    python_module: 'nodes',
    category: node.category,
    output_node: node.outputNode === true,
  };
}

export function objectInfo(): Record<string, unknown> {
  return Object.fromEntries(Object.keys(NODE_CLASSES).map((name) => [name, nodeInfo(name)]));
}

/** server.py `system_stats`: the simulated machine. */
export function systemStats(): Record<string, unknown> {
  const gib = 1024 ** 3;
  return {
    system: {
      os: 'posix',
      ram_total: 64 * gib,
      ram_free: 48 * gib,
      comfyui_version: '0.3.0-darkroom-sim',
      python_version: '3.12.0 (darkroom simulator)',
      pytorch_version: 'none',
      embedded_python: false,
      argv: ['main.py'],
    },
    devices: [
      {
        name: 'simulated GPU',
        type: 'cuda',
        index: 0,
        vram_total: 24 * gib,
        vram_free: 20 * gib,
        torch_vram_total: 24 * gib,
        torch_vram_free: 20 * gib,
      },
    ],
  };
}

export interface ValidationError {
  type: string;
  message: string;
  details: string;
  extra_info: Record<string, unknown>;
}

function fail(
  type: string,
  message: string,
  details: string,
  extra_info: Record<string, unknown> = {},
): ValidationError {
  return { type, message, details, extra_info };
}

export type Validation =
  | { ok: true; outputs: string[]; order: string[] }
  | { ok: false; error: ValidationError; nodeErrors: Record<string, unknown> };

function isLink(value: unknown): value is [string, number] {
  return (
    Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'number'
  );
}

/** The nodes `output` depends on, dependencies first (execution order). */
function upstreamOrder(workflow: Workflow, output: string, seen: Set<string>, order: string[]): void {
  if (seen.has(output)) return;
  seen.add(output);
  for (const value of Object.values(workflow[output]?.inputs ?? {}))
    if (isLink(value) && workflow[value[0]]) upstreamOrder(workflow, value[0], seen, order);
  order.push(output);
}

/** execution.py converts with int()/float(), then checks min and max. */
function checkNumber(
  name: string,
  type: 'INT' | 'FLOAT',
  options: Record<string, unknown>,
  value: unknown,
): ValidationError | undefined {
  const extra = { input_name: name, received_value: value };
  const number =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && value.trim() !== '' && (type === 'FLOAT' || /^\s*-?\d+\s*$/.test(value))
        ? Number(value)
        : Number.NaN;
  if (!Number.isFinite(number))
    return fail(
      'invalid_input_type',
      `Failed to convert an input ${name} value to a ${type} value`,
      `${name}, ${String(value)}`,
      extra,
    );
  if (typeof options.min === 'number' && number < options.min)
    return fail('value_smaller_than_min', `Value ${number} smaller than min of ${options.min}`, name, extra);
  if (typeof options.max === 'number' && number > options.max)
    return fail('value_bigger_than_max', `Value ${number} bigger than max of ${options.max}`, name, extra);
  return undefined;
}

function checkInputs(
  workflow: Workflow,
  id: string,
  hasInputFile: (name: string) => boolean,
): ValidationError[] {
  const node = workflow[id]!;
  const spec = NODE_CLASSES[String(node.class_type)]!;
  const errors: ValidationError[] = [];
  for (const [name, [type, options]] of Object.entries(spec.required)) {
    const value = node.inputs?.[name];
    if (value === undefined) {
      errors.push(fail('required_input_missing', 'Required input is missing', name, { input_name: name }));
    } else if (isLink(value)) {
      if (!workflow[value[0]])
        errors.push(
          fail(
            'bad_linked_input',
            'Bad linked input, must be a length-2 list of [node_id, slot_index]',
            name,
            { input_name: name, received_value: value },
          ),
        );
    } else if (Array.isArray(type) && !type.includes(String(value))) {
      errors.push(
        fail(
          'value_not_in_list',
          'Value not in list',
          `${name}: '${String(value)}' not in (list of length ${type.length})`,
          { input_name: name, received_value: value },
        ),
      );
    } else if (type === 'INT' || type === 'FLOAT') {
      const error = checkNumber(name, type, options ?? {}, value);
      if (error) errors.push(error);
    }
  }
  if (
    node.class_type === 'LoadImage' &&
    typeof node.inputs?.image === 'string' &&
    !hasInputFile(node.inputs.image)
  )
    errors.push(
      fail(
        'custom_validation_failed',
        'Custom validation failed for node',
        `image - Invalid image file: ${node.inputs.image}`,
        { input_name: 'image' },
      ),
    );
  return errors;
}

function titleOf(node: Workflow[string], fallback: string): string {
  const meta = node._meta;
  return typeof meta === 'object' && meta !== null && typeof (meta as { title?: unknown }).title === 'string'
    ? (meta as { title: string }).title
    : fallback;
}

/** execution.py `validate_prompt`: the outputs to run and the order their nodes execute in, or the 400 body. */
export function validatePrompt(workflow: Workflow, hasInputFile: (name: string) => boolean): Validation {
  const outputs: string[] = [];
  for (const [id, node] of Object.entries(workflow)) {
    const classType = typeof node === 'object' && node !== null ? node.class_type : undefined;
    if (typeof classType !== 'string') {
      const title = typeof node === 'object' && node !== null ? titleOf(node, `ID #${id}`) : `ID #${id}`;
      return {
        ok: false,
        nodeErrors: {},
        error: fail(
          'missing_node_type',
          `Node '${title}' has no class_type. The workflow may be corrupted or a custom node is missing.`,
          `Node ID '#${id}'`,
          { node_id: id, class_type: null, node_title: title },
        ),
      };
    }
    if (!NODE_CLASSES[classType]) {
      const title = titleOf(node, classType);
      return {
        ok: false,
        nodeErrors: {},
        error: fail(
          'missing_node_type',
          `Node '${title}' not found. The custom node may not be installed.`,
          `Node ID '#${id}'`,
          { node_id: id, class_type: classType, node_title: title },
        ),
      };
    }
    if (NODE_CLASSES[classType].outputNode) outputs.push(id);
  }
  if (outputs.length === 0)
    return { ok: false, nodeErrors: {}, error: fail('prompt_no_outputs', 'Prompt has no outputs', '', {}) };

  const nodeErrors: Record<
    string,
    { errors: ValidationError[]; dependent_outputs: string[]; class_type: string }
  > = {};
  const good: string[] = [];
  const order: string[] = [];
  const seen = new Set<string>();
  for (const output of outputs) {
    const nodes: string[] = [];
    upstreamOrder(workflow, output, new Set(), nodes);
    let valid = true;
    for (const id of nodes) {
      const errors = checkInputs(workflow, id, hasInputFile);
      if (errors.length === 0) continue;
      valid = false;
      nodeErrors[id] ??= { errors, dependent_outputs: [], class_type: String(workflow[id]?.class_type) };
      nodeErrors[id].dependent_outputs.push(output);
    }
    if (!valid) continue;
    good.push(output);
    for (const id of nodes) {
      if (seen.has(id)) continue;
      seen.add(id);
      order.push(id);
    }
  }
  if (good.length === 0) {
    const details = Object.values(nodeErrors)
      .flatMap((node) => node.errors.map((error) => `${error.message}: ${error.details}`))
      .join('\n');
    return {
      ok: false,
      nodeErrors,
      error: {
        type: 'prompt_outputs_failed_validation',
        message: 'Prompt outputs failed validation',
        details,
        extra_info: {},
      },
    };
  }
  return { ok: true, outputs: good, order };
}
