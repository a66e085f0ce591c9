import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WebSocket } from 'ws';
import {
  hangUntilClosed,
  json,
  parseJson,
  parseMultipart,
  readBody,
  send,
  sendTrickle,
  text,
  type Reply,
} from './http.ts';
import { MAX_FAKE_SIDE, notAnImage, renderFakePng } from './images.ts';
import type { KeyLimiter } from './key-limiter.ts';
import type { ContentFault, SimContext, SimProvider } from './sim-provider.ts';
import type { Fault } from './types.ts';

type Workflow = Record<string, { class_type: string; inputs?: Record<string, unknown> }>;

interface ExecutionPlan {
  text: string;
  seed: number;
  batchSize: number;
  width: number;
  height: number;
  steps: number;
  samplerNode: string;
  outputNode: string;
}

interface QueueItem {
  number: number;
  promptId: string;
  workflow: Workflow;
  extraData: { client_id?: string; create_time: number };
  plan: ExecutionPlan;
  fault: ContentFault;
}

interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

interface HistoryEntry {
  prompt: [number, string, Workflow, QueueItem['extraData'], string[]];
  outputs: Record<string, { images: ImageRef[] }>;
  status: {
    status_str: 'success' | 'error';
    completed: boolean;
    messages: Array<[string, Record<string, unknown>]>;
  };
  meta: Record<string, { node_id: string; display_node: string; parent_node: null; real_node_id: string }>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function comfyError(
  type: string,
  message: string,
  details = '',
  nodeErrors: Record<string, unknown> = {},
): Reply {
  return json(400, { error: { type, message, details, extra_info: {} }, node_errors: nodeErrors });
}

/**
 * An in-memory ComfyUI: a prompt queue drained by `concurrency` GPU slots (the provider's first key),
 * history, uploaded inputs, outputs and websocket clients. It never answers 429 on its own: like the
 * real server, it queues.
 */
export class ComfyFake {
  private readonly ctx: SimContext;
  private readonly provider: SimProvider;
  private number = 0;
  private fileCounter = 0;
  private pending: QueueItem[] = [];
  private readonly running = new Map<string, { item: QueueItem; release: () => void; node: string }>();
  private readonly history = new Map<string, HistoryEntry>();
  private readonly files = new Map<string, Buffer>();
  private readonly sockets = new Map<string, WebSocket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(ctx: SimContext, provider: SimProvider) {
    this.ctx = ctx;
    this.provider = provider;
  }

  private get gpu(): KeyLimiter | undefined {
    return this.provider.firstKey();
  }

  /** Routes a request below `/p/<name>`; returns false when the path is not ComfyUI's. */
  async handle(req: IncomingMessage, res: ServerResponse, path: string, url: URL): Promise<boolean> {
    const route = path.startsWith('/api/') ? path.slice(4) : path;
    const method = req.method ?? 'GET';
    if (method === 'POST' && route === '/upload/image') {
      await this.upload(req, res);
    } else if (method === 'POST' && route === '/prompt') {
      await this.postPrompt(req, res);
    } else if (method === 'GET' && route === '/prompt') {
      send(res, json(200, { exec_info: { queue_remaining: this.queueRemaining() } }));
    } else if (method === 'GET' && route === '/queue') {
      send(res, json(200, this.queueSnapshot()));
    } else if (method === 'GET' && route === '/history') {
      send(res, json(200, Object.fromEntries(this.history)));
    } else if (method === 'GET' && route.startsWith('/history/')) {
      const id = decodeURIComponent(route.slice('/history/'.length));
      const entry = this.history.get(id);
      send(res, json(200, entry ? { [id]: entry } : {}));
    } else if (method === 'GET' && route === '/view') {
      this.view(res, url);
    } else {
      return false;
    }
    return true;
  }

  isWebSocketPath(path: string): boolean {
    return path === '/ws' || path === '/api/ws';
  }

  attachSocket(ws: WebSocket, requestedId: string | null): void {
    const sid = requestedId || randomUUID().replaceAll('-', '');
    this.sockets.get(sid)?.terminate();
    this.sockets.set(sid, ws);
    ws.on('close', () => {
      if (this.sockets.get(sid) === ws) this.sockets.delete(sid);
    });
    ws.on('error', () => ws.terminate());
    this.sendTo(sid, 'status', { status: { exec_info: { queue_remaining: this.queueRemaining() } }, sid });
    for (const run of this.running.values()) {
      if (run.item.extraData.client_id === sid)
        this.sendTo(sid, 'executing', { node: run.node, prompt_id: run.item.promptId });
    }
  }

  /** A process restart: everything in memory is gone and every websocket drops. */
  restart(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const run of this.running.values()) run.release();
    this.running.clear();
    this.pending = [];
    this.history.clear();
    this.files.clear();
    for (const ws of this.sockets.values()) ws.terminate();
    this.sockets.clear();
    this.number = 0;
  }

  close(): void {
    this.restart();
  }

  private async upload(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = await parseMultipart(req, await readBody(req));
    const image = form?.get('image');
    if (!form || !image || typeof image === 'string' || !image.name) {
      send(res, text(400, '400: Bad Request'));
      return;
    }
    const subfolder = typeof form.get('subfolder') === 'string' ? String(form.get('subfolder')) : '';
    const type = typeof form.get('type') === 'string' ? String(form.get('type')) : 'input';
    const name = image.name.replace(/[\\/]/g, '_');
    this.files.set(this.fileKey(type, subfolder, name), Buffer.from(await image.arrayBuffer()));
    send(res, json(200, { name, subfolder, type }));
  }

  private view(res: ServerResponse, url: URL): void {
    const filename = url.searchParams.get('filename') ?? '';
    const key = this.fileKey(
      url.searchParams.get('type') ?? 'output',
      url.searchParams.get('subfolder') ?? '',
      filename,
    );
    const bytes = this.files.get(key);
    if (!bytes) {
      send(res, text(404, '404: Not Found'));
      return;
    }
    send(res, {
      status: 200,
      body: bytes,
      contentType: 'image/png',
      headers: { 'content-disposition': `filename="${filename}"` },
    });
  }

  private async postPrompt(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseJson(await readBody(req));
    const gpu = this.gpu;
    if (!gpu) {
      send(res, text(500, '500 Internal Server Error'));
      return;
    }
    gpu.noteRequest();
    const keyId = gpu.key.id;
    const fault: Fault | undefined = this.provider.faults.take(keyId) ?? this.provider.randomServerError();
    switch (fault) {
      case 'http429':
        gpu.noteRejected();
        send(
          res,
          json(
            429,
            { error: 'Too Many Requests' },
            { 'retry-after': Math.ceil(this.provider.hintedRetryAfterMs() / 1000) },
          ),
        );
        return;
      case 'http500':
        send(res, text(500, '500 Internal Server Error\n\nServer got itself in trouble'));
        return;
      case 'http503':
        send(res, text(503, '503 Service Unavailable'));
        return;
      case 'hang':
        await hangUntilClosed(res);
        return;
      case 'malformed_json':
        send(res, { status: 200, contentType: 'application/json; charset=utf-8', body: '{"prompt_id": "' });
        return;
      default:
    }
    const result = this.enqueue(body, fault === 'trickle' ? undefined : fault);
    if (fault === 'trickle') sendTrickle(res, result, this.ctx.trickleMs);
    else send(res, result);
  }

  private enqueue(body: unknown, fault: ContentFault): Reply {
    const request = (body ?? {}) as { prompt?: unknown; client_id?: unknown; prompt_id?: unknown };
    if (typeof request.prompt !== 'object' || request.prompt === null) {
      return comfyError('no_prompt', 'No prompt provided', 'No prompt provided');
    }
    let promptId: string = randomUUID();
    if (request.prompt_id !== undefined && request.prompt_id !== null) {
      if (typeof request.prompt_id !== 'string' || !UUID.test(request.prompt_id)) {
        return comfyError(
          'invalid_prompt_id',
          'prompt_id must be a valid UUID',
          'prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one',
        );
      }
      promptId = request.prompt_id;
    }
    const workflow = request.prompt as Workflow;
    const planned = this.plan(workflow);
    if ('status' in planned) return planned;
    this.gpu?.recordAcceptance(this.ctx.now());
    const number = this.number;
    this.number += 1;
    const extraData = {
      ...(typeof request.client_id === 'string' ? { client_id: request.client_id } : {}),
      create_time: this.ctx.now(),
    };
    this.pending.push({ number, promptId, workflow, extraData, plan: planned, fault });
    this.broadcastStatus();
    this.pump();
    return json(200, { prompt_id: promptId, number, node_errors: {} });
  }

  /** Reads what the simulator needs from a workflow and validates it the way ComfyUI's validator would. */
  private plan(workflow: Workflow): ExecutionPlan | Reply {
    const entries = Object.entries(workflow);
    for (const [id, node] of entries) {
      if (typeof node !== 'object' || node === null || typeof node.class_type !== 'string') {
        return comfyError(
          'invalid_prompt',
          'Cannot execute because a node is missing the class_type property.',
          `Node ID '#${id}'`,
        );
      }
    }
    const output =
      entries.find(([, node]) => node.class_type === 'SaveImage') ??
      entries.find(([, node]) => node.class_type === 'PreviewImage');
    if (!output) return comfyError('prompt_no_outputs', 'Prompt has no outputs');
    const outputNode = output[0];
    for (const [, node] of entries) {
      if (node.class_type !== 'LoadImage') continue;
      const name = node.inputs?.image;
      if (typeof name !== 'string' || !this.files.has(this.fileKey('input', '', name))) {
        return comfyError('prompt_outputs_failed_validation', 'Prompt outputs failed validation', '', {
          [outputNode]: {
            errors: [
              {
                type: 'custom_validation_failed',
                message: 'Custom validation failed for node',
                details: `image - Invalid image file: ${String(name)}`,
                extra_info: { input_name: 'image' },
              },
            ],
            dependent_outputs: [outputNode],
            class_type: 'LoadImage',
          },
        });
      }
    }
    const inputsOf = (predicate: (classType: string) => boolean): Record<string, unknown> =>
      entries.find(([, node]) => predicate(node.class_type))?.[1].inputs ?? {};
    const latent = inputsOf((type) => type.startsWith('Empty') && type.includes('Latent'));
    const sampler = entries.find(([, node]) => node.class_type.startsWith('KSampler'));
    const samplerInputs = sampler?.[1].inputs ?? {};
    const text = inputsOf((type) => type.startsWith('CLIPTextEncode')).text;
    const number = (value: unknown, fallback: number): number =>
      typeof value === 'number' && Number.isFinite(value) ? value : fallback;
    return {
      text: typeof text === 'string' ? text : '',
      seed: number(samplerInputs.seed ?? samplerInputs.noise_seed, 0),
      batchSize: Math.max(1, Math.floor(number(latent.batch_size, 1))),
      width: Math.min(MAX_FAKE_SIDE, Math.max(8, Math.floor(number(latent.width, 512)))),
      height: Math.min(MAX_FAKE_SIDE, Math.max(8, Math.floor(number(latent.height, 512)))),
      steps: Math.max(1, Math.min(50, Math.floor(number(samplerInputs.steps, 20)))),
      samplerNode: sampler?.[0] ?? entries[0]?.[0] ?? outputNode,
      outputNode,
    };
  }

  /** Starts queued prompts while GPU slots are free. */
  private pump(): void {
    const gpu = this.gpu;
    if (!gpu) return;
    while (this.pending.length > 0 && gpu.inFlightNow < gpu.key.concurrency) {
      const item = this.pending.shift();
      if (item) this.execute(item, gpu.holdSlot());
    }
  }

  private execute(item: QueueItem, release: () => void): void {
    const { promptId, plan } = item;
    const sid = item.extraData.client_id;
    const messages: HistoryEntry['status']['messages'] = [];
    const emit = (type: string, data: Record<string, unknown>, record = false): void => {
      if (record) messages.push([type, data]);
      if (sid) this.sendTo(sid, type, data);
    };
    const run = { item, release, node: plan.samplerNode };
    this.running.set(promptId, run);
    this.broadcastStatus();
    emit('execution_start', { prompt_id: promptId, timestamp: this.ctx.now() }, true);
    emit('execution_cached', { nodes: [], prompt_id: promptId, timestamp: this.ctx.now() }, true);
    emit('executing', { node: plan.samplerNode, display_node: plan.samplerNode, prompt_id: promptId });

    const totalMs = this.provider.latency();
    let step = 0;
    const tick = (): void => {
      step += 1;
      emit('progress', { value: step, max: plan.steps, prompt_id: promptId, node: plan.samplerNode });
      if (step < plan.steps) this.schedule(tick, totalMs / plan.steps);
      else void this.finish(run, messages, emit);
    };
    this.schedule(tick, totalMs / plan.steps);
  }

  private async finish(
    run: { item: QueueItem; release: () => void; node: string },
    messages: HistoryEntry['status']['messages'],
    emit: (type: string, data: Record<string, unknown>, record?: boolean) => void,
  ): Promise<void> {
    const { item } = run;
    const { promptId, plan } = item;
    const outputs: HistoryEntry['outputs'] = {};
    let failed = false;
    if (item.fault === 'refusal') {
      failed = true;
      emit(
        'execution_error',
        {
          prompt_id: promptId,
          node_id: plan.samplerNode,
          node_type: item.workflow[plan.samplerNode]?.class_type ?? 'KSampler',
          executed: [],
          exception_message: 'Content refused by the safety checker.',
          exception_type: 'RuntimeError',
          traceback: [],
          current_inputs: {},
          current_outputs: {},
        },
        true,
      );
    } else {
      run.node = plan.outputNode;
      emit('executing', { node: plan.outputNode, display_node: plan.outputNode, prompt_id: promptId });
      if (item.fault !== 'no_image') {
        const images: ImageRef[] = [];
        for (let index = 0; index < plan.batchSize; index += 1) {
          const bytes =
            item.fault === 'not_an_image'
              ? notAnImage()
              : await renderFakePng({
                  prompt: plan.text,
                  index,
                  seed: plan.seed,
                  width: plan.width,
                  height: plan.height,
                });
          // A restart while rendering dropped this prompt; its results must not reappear.
          if (this.running.get(promptId) !== run) return;
          this.fileCounter += 1;
          const filename = `ComfyUI_${String(this.fileCounter).padStart(5, '0')}_.png`;
          this.files.set(this.fileKey('output', '', filename), bytes);
          images.push({ filename, subfolder: '', type: 'output' });
        }
        outputs[plan.outputNode] = { images };
        emit('executed', {
          node: plan.outputNode,
          display_node: plan.outputNode,
          output: { images },
          prompt_id: promptId,
        });
      }
      emit('execution_success', { prompt_id: promptId, timestamp: this.ctx.now() }, true);
    }
    if (this.running.get(promptId) !== run) return;
    this.running.delete(promptId);
    run.release();
    this.history.set(promptId, {
      prompt: [item.number, promptId, item.workflow, item.extraData, [plan.outputNode]],
      outputs,
      status: { status_str: failed ? 'error' : 'success', completed: !failed, messages },
      meta: Object.fromEntries(
        Object.keys(outputs).map((node) => [
          node,
          { node_id: node, display_node: node, parent_node: null, real_node_id: node },
        ]),
      ),
    });
    emit('executing', { node: null, prompt_id: promptId });
    this.broadcastStatus();
    this.pump();
  }

  private queueRemaining(): number {
    return this.pending.length + this.running.size;
  }

  private queueSnapshot(): { queue_running: unknown[]; queue_pending: unknown[] } {
    const row = (item: QueueItem): unknown[] => [
      item.number,
      item.promptId,
      item.workflow,
      item.extraData,
      [item.plan.outputNode],
    ];
    return {
      queue_running: [...this.running.values()].map((run) => row(run.item)),
      queue_pending: this.pending.map(row),
    };
  }

  private broadcastStatus(): void {
    for (const sid of this.sockets.keys()) {
      this.sendTo(sid, 'status', { status: { exec_info: { queue_remaining: this.queueRemaining() } } });
    }
  }

  private sendTo(sid: string, type: string, data: Record<string, unknown>): void {
    const ws = this.sockets.get(sid);
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type, data }));
  }

  private schedule(fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }

  private fileKey(type: string, subfolder: string, filename: string): string {
    return `${type}\u0000${subfolder}\u0000${filename}`;
  }
}
