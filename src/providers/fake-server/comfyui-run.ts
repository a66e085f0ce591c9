/**
 * One prompt executing on a simulated GPU slot, with the websocket traffic of comfyanonymous/ComfyUI
 * `execution.py` (`execution_start`, `execution_cached`, `executing` per node, `progress` per sampler
 * step, `executed` per output node, `execution_success` / `execution_error` / `execution_interrupted`) and
 * a binary PREVIEW_IMAGE frame per sampler step as server.py `send_image` encodes it. An interrupt takes
 * effect at the next node or step, as `throw_exception_if_processing_interrupted` does.
 */
import sharp from 'sharp';
import type { ContentFault } from './sim-provider.ts';
import { MAX_FAKE_SIDE, notAnImage, renderFakePng } from './images.ts';
import type { Workflow } from './comfyui-nodes.ts';

export interface QueueItem {
  number: number;
  promptId: string;
  workflow: Workflow;
  extraData: { client_id?: string; create_time: number };
  /** Output nodes that passed validation, and the order their nodes execute in. */
  outputs: string[];
  order: string[];
  fault: ContentFault;
}

export interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

export type StatusMessage = [string, Record<string, unknown>];

export interface HistoryEntry {
  prompt: [number, string, Workflow, QueueItem['extraData'], string[]];
  outputs: Record<string, { images: ImageRef[] }>;
  status: { status_str: 'success' | 'error'; completed: boolean; messages: StatusMessage[] };
  meta: Record<string, { node_id: string; display_node: string; parent_node: null; real_node_id: string }>;
}

/** What a run needs from the server around it. */
export interface RunHost {
  now(): number;
  /** A JSON event to the client that queued the prompt. */
  emit(type: string, data: Record<string, unknown>): void;
  emitBinary(frame: Buffer): void;
  wait(ms: number): Promise<void>;
  /** Stores a result file (`output` or `temp`) and returns how /view finds it. */
  store(bytes: Buffer, type: 'output' | 'temp'): ImageRef;
  /** Bytes of an uploaded input image, for img2img sizes. */
  input(name: string): Buffer | undefined;
  /** Total simulated GPU time of one prompt. */
  latencyMs: number;
  /** Nodes whose outputs the previous prompt left in the cache. */
  cached: ReadonlySet<string>;
}

/** server.py BinaryEventTypes.PREVIEW_IMAGE, then the image format (1 = JPEG, 2 = PNG). */
const PREVIEW_IMAGE = 1;
const JPEG = 1;
let previewJpeg: Promise<Buffer> | undefined;

async function previewFrame(): Promise<Buffer> {
  previewJpeg ??= sharp({ create: { width: 8, height: 8, channels: 3, background: '#6a6a6a' } })
    .jpeg()
    .toBuffer();
  const header = Buffer.alloc(8);
  header.writeUInt32BE(PREVIEW_IMAGE, 0);
  header.writeUInt32BE(JPEG, 4);
  return Buffer.concat([header, await previewJpeg]);
}

const isSampler = (classType: unknown): boolean =>
  typeof classType === 'string' && classType.startsWith('KSampler');
const isOutput = (classType: unknown): boolean => classType === 'SaveImage' || classType === 'PreviewImage';

function numberInput(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

function stepsOf(node: Workflow[string]): number {
  return Math.max(1, Math.min(50, Math.floor(numberInput(node.inputs?.steps, 20))));
}

/** Node signatures: class and inputs, including those of the nodes linked in; equal means cacheable. */
export function signatures(workflow: Workflow, order: string[]): Map<string, string> {
  const result = new Map<string, string>();
  for (const id of order) {
    const node = workflow[id];
    const inputs = Object.entries(node?.inputs ?? {}).map(([name, value]) =>
      Array.isArray(value) && typeof value[0] === 'string' && result.has(value[0])
        ? [name, result.get(value[0]), value[1]]
        : [name, value],
    );
    result.set(id, JSON.stringify([node?.class_type, inputs]));
  }
  return result;
}

export class PromptRun {
  private interrupted = false;
  /** The node executing now, for a client that reconnects. */
  currentNode: string | undefined;
  private wake: (() => void) | undefined;
  private readonly item: QueueItem;
  private readonly host: RunHost;
  private readonly messages: StatusMessage[] = [];
  /** Nodes that ran to the end in this prompt, or came from the cache: what the cache holds afterwards. */
  readonly executed: string[] = [];

  constructor(item: QueueItem, host: RunHost) {
    this.item = item;
    this.host = host;
  }

  get promptId(): string {
    return this.item.promptId;
  }

  interrupt(): void {
    this.interrupted = true;
    this.wake?.();
  }

  /** Simulated GPU time; an interrupt ends it early, as the sampler's next step would notice it. */
  private async pause(ms: number): Promise<void> {
    await Promise.race([this.host.wait(ms), new Promise<void>((resolve) => (this.wake = resolve))]);
    this.wake = undefined;
  }

  /** Executes the prompt; resolves with its history entry. */
  async run(): Promise<HistoryEntry> {
    const { item, host } = this;
    const { promptId, workflow } = item;
    this.record('execution_start', { prompt_id: promptId, timestamp: host.now() });
    const cached = item.order.filter((id) => host.cached.has(id) && !isOutput(workflow[id]?.class_type));
    this.record('execution_cached', { nodes: cached, prompt_id: promptId, timestamp: host.now() });
    this.executed.push(...cached);
    const toRun = item.order.filter((id) => !cached.includes(id));
    const samplers = toRun.filter((id) => isSampler(workflow[id]?.class_type));
    const totalSteps = samplers.reduce((sum, id) => sum + stepsOf(workflow[id]!), 0);
    const stepMs = host.latencyMs / Math.max(1, totalSteps);
    const outputs: HistoryEntry['outputs'] = {};
    for (const id of toRun) {
      const classType = workflow[id]?.class_type;
      if (this.interrupted) return this.end(outputs, this.interruption(id));
      this.currentNode = id;
      host.emit('executing', { node: id, display_node: id, prompt_id: promptId });
      if (isSampler(classType)) {
        if (item.fault === 'refusal') return this.end(outputs, this.refusal(id));
        const steps = stepsOf(workflow[id]!);
        for (let step = 1; step <= steps; step += 1) {
          await this.pause(stepMs);
          if (this.interrupted) return this.end(outputs, this.interruption(id));
          host.emit('progress', { value: step, max: steps, prompt_id: promptId, node: id });
          host.emitBinary(await previewFrame());
        }
      } else if (isOutput(classType)) {
        if (totalSteps === 0) await this.pause(host.latencyMs);
        if (this.interrupted) return this.end(outputs, this.interruption(id));
        if (item.fault !== 'no_image') {
          const images = await this.render(classType === 'SaveImage' ? 'output' : 'temp');
          outputs[id] = { images };
          host.emit('executed', { node: id, display_node: id, output: { images }, prompt_id: promptId });
        }
      }
      this.executed.push(id);
    }
    this.record('execution_success', { prompt_id: promptId, timestamp: host.now() });
    return this.end(outputs, 'success');
  }

  private record(type: string, data: Record<string, unknown>): void {
    this.messages.push([type, data]);
    this.host.emit(type, data);
  }

  private interruption(nodeId: string): 'error' {
    const node = this.item.workflow[nodeId];
    this.record('execution_interrupted', {
      prompt_id: this.item.promptId,
      node_id: nodeId,
      node_type: node?.class_type,
      executed: [...this.executed],
    });
    return 'error';
  }

  private refusal(nodeId: string): 'error' {
    this.record('execution_error', {
      prompt_id: this.item.promptId,
      node_id: nodeId,
      node_type: this.item.workflow[nodeId]?.class_type,
      executed: [...this.executed],
      exception_message: 'Content refused by the safety checker.',
      exception_type: 'RuntimeError',
      traceback: [],
      current_inputs: {},
      current_outputs: {},
    });
    return 'error';
  }

  private end(outputs: HistoryEntry['outputs'], status: 'success' | 'error'): HistoryEntry {
    const { item } = this;
    return {
      prompt: [item.number, item.promptId, item.workflow, item.extraData, item.outputs],
      outputs,
      status: { status_str: status, completed: status === 'success', messages: this.messages },
      meta: Object.fromEntries(
        Object.keys(outputs).map((node) => [
          node,
          { node_id: node, display_node: node, parent_node: null, real_node_id: node },
        ]),
      ),
    };
  }

  private async render(type: 'output' | 'temp'): Promise<ImageRef[]> {
    const { workflow, order } = this.item;
    const byClass = (predicate: (classType: string) => boolean): Record<string, unknown> =>
      workflow[order.find((id) => predicate(String(workflow[id]?.class_type))) ?? '']?.inputs ?? {};
    const latent = byClass((t) => t.startsWith('Empty') && t.includes('Latent'));
    const sampler = byClass((t) => t.startsWith('KSampler'));
    const text = byClass((t) => t.startsWith('CLIPTextEncode')).text;
    let width = numberInput(latent.width, 512);
    let height = numberInput(latent.height, 512);
    const loaded = byClass((t) => t === 'LoadImage').image;
    const input = typeof loaded === 'string' && !('width' in latent) ? this.host.input(loaded) : undefined;
    if (input) {
      const meta = await sharp(input).metadata();
      width = meta.width ?? width;
      height = meta.height ?? height;
    }
    const side = (value: number): number => Math.min(MAX_FAKE_SIDE, Math.max(8, Math.floor(value)));
    const batch = Math.max(1, Math.floor(numberInput(latent.batch_size, 1)));
    const rendered = await Promise.all(
      Array.from({ length: batch }, (_, index) =>
        this.item.fault === 'not_an_image'
          ? notAnImage()
          : renderFakePng({
              prompt: typeof text === 'string' ? text : '',
              index,
              seed: numberInput(sampler.seed ?? sampler.noise_seed, 0),
              width: side(width),
              height: side(height),
            }),
      ),
    );
    return rendered.map((bytes) => this.host.store(bytes, type));
  }
}
