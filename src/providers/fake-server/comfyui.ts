/**
 * An in-memory ComfyUI speaking the HTTP and websocket API of comfyanonymous/ComfyUI `server.py`
 * (`PromptServer` routes: `POST /upload/image`, `GET|POST /prompt`, `GET|POST /queue`, `POST /interrupt`,
 * `GET|POST /history`, `GET /history/{prompt_id}`, `GET /view`, `GET /object_info[/{node_class}]`,
 * `GET /system_stats`, `/ws?clientId=`, each also under `/api`). A prompt queue is drained by
 * `concurrency` GPU slots (the provider's first key). It never answers 429 on its own: like the real
 * server, it queues. `POST /prompt` is answered before the prompt's first execution event is sent.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WebSocket } from 'ws';
import { nodeInfo, objectInfo, systemStats, validatePrompt, type Workflow } from './comfyui-nodes.ts';
import { PromptRun, signatures, type HistoryEntry, type ImageRef, type QueueItem } from './comfyui-run.ts';
import {
  hangUntilClosed,
  json,
  parseJson,
  parseMultipart,
  readBody,
  send,
  sendTrickle,
  sendTruncated,
  text,
  type Reply,
} from './http.ts';
import type { KeyLimiter } from './key-limiter.ts';
import type { ContentFault, SimContext, SimProvider } from './sim-provider.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** What the simulator saw of the calls that stop work, for tests. */
export interface ComfyFakeStats {
  /** Each `POST /interrupt`: the prompt it named (null: global) and the prompts it interrupted. */
  interrupts: Array<{ prompt_id: string | null; interrupted: string[] }>;
  /** Prompt ids removed from the pending queue by `POST /queue {delete}`. */
  deleted: string[];
  /** Output files downloaded through `GET /view`. */
  views: number;
  /** Prompts executing on the GPU slots, and prompts waiting for one. */
  running: number;
  pending: number;
}

function comfyError(type: string, message: string, details = ''): Reply {
  return json(400, { error: { type, message, details, extra_info: {} }, node_errors: {} });
}

export class ComfyFake {
  private readonly ctx: SimContext;
  private readonly provider: SimProvider;
  private number = 0;
  private fileCounter = 0;
  private pending: QueueItem[] = [];
  private readonly running = new Map<string, { run: PromptRun; item: QueueItem; release: () => void }>();
  private readonly history = new Map<string, HistoryEntry>();
  private readonly files = new Map<string, Buffer>();
  private readonly sockets = new Map<string, WebSocket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private cache = new Map<string, string>();
  private seen: ComfyFakeStats = { interrupts: [], deleted: [], views: 0, running: 0, pending: 0 };

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
    const get = method === 'GET';
    const post = method === 'POST';
    if (post && route === '/upload/image') await this.upload(req, res);
    else if (post && route === '/prompt') await this.postPrompt(req, res);
    else if (get && route === '/prompt') send(res, json(200, this.queueInfo()));
    else if (get && route === '/queue') send(res, json(200, this.queueSnapshot()));
    else if (post && route === '/queue') this.postQueue(res, await readJson(req));
    else if (post && route === '/interrupt') this.postInterrupt(res, await readJson(req));
    else if (get && route === '/history') send(res, json(200, this.historyList(url)));
    else if (post && route === '/history') this.postHistory(res, await readJson(req));
    else if (get && route.startsWith('/history/')) {
      const id = decodeURIComponent(route.slice('/history/'.length));
      const entry = this.history.get(id);
      send(res, json(200, entry ? { [id]: entry } : {}));
    } else if (get && route === '/view') this.view(res, url);
    else if (get && route === '/object_info') send(res, json(200, objectInfo()));
    else if (get && route.startsWith('/object_info/')) {
      const name = decodeURIComponent(route.slice('/object_info/'.length));
      const info = nodeInfo(name);
      send(res, json(200, info ? { [name]: info } : {}));
    } else if (get && route === '/system_stats') send(res, json(200, systemStats()));
    else return false;
    return true;
  }

  isWebSocketPath(path: string): boolean {
    return path === '/ws' || path === '/api/ws';
  }

  /** server.py `websocket_handler`: a reused clientId replaces the old socket; a status message first. */
  attachSocket(ws: WebSocket, requestedId: string | null): void {
    const sid = requestedId || randomUUID().replaceAll('-', '');
    this.sockets.get(sid)?.terminate();
    this.sockets.set(sid, ws);
    ws.on('close', () => {
      if (this.sockets.get(sid) === ws) this.sockets.delete(sid);
    });
    ws.on('error', () => ws.terminate());
    this.sendTo(sid, 'status', { status: this.queueInfo(), sid });
    // On reconnect the client whose prompt executes learns the current node.
    for (const { run, item } of this.running.values()) {
      if (item.extraData.client_id === sid && run.currentNode !== undefined)
        this.sendTo(sid, 'executing', { node: run.currentNode, prompt_id: item.promptId });
    }
  }

  stats(): ComfyFakeStats {
    return { ...this.seen, running: this.running.size, pending: this.pending.length };
  }

  /** A process restart: everything in memory is gone and every websocket drops. */
  restart(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const { release } of this.running.values()) release();
    this.running.clear();
    this.pending = [];
    this.history.clear();
    this.files.clear();
    this.cache.clear();
    for (const ws of this.sockets.values()) ws.terminate();
    this.sockets.clear();
    this.number = 0;
    this.seen = { interrupts: [], deleted: [], views: 0, running: 0, pending: 0 };
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
    this.files.set(fileKey(type, subfolder, name), Buffer.from(await image.arrayBuffer()));
    send(res, json(200, { name, subfolder, type }));
  }

  private view(res: ServerResponse, url: URL): void {
    const filename = url.searchParams.get('filename') ?? '';
    const type = url.searchParams.get('type') ?? 'output';
    const bytes = this.files.get(fileKey(type, url.searchParams.get('subfolder') ?? '', filename));
    if (!bytes) {
      send(res, text(404, '404: Not Found'));
      return;
    }
    const headers = { 'content-disposition': `filename="${filename}"` };
    this.seen.views += 1;
    send(res, { status: 200, body: bytes, contentType: 'image/png', headers });
  }

  private async postPrompt(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = parseJson(await readBody(req));
    const gpu = this.gpu;
    if (!gpu) {
      send(res, text(500, '500 Internal Server Error'));
      return;
    }
    gpu.noteRequest();
    const fault = this.provider.faults.take(gpu.key.id) ?? this.provider.randomServerError();
    switch (fault) {
      case 'http429_no_retry_info':
      case 'http429_daily':
      case 'http429': {
        gpu.noteRejected();
        this.provider.noteRejected('scripted');
        const retryAfter = Math.ceil(this.provider.hintedRetryAfterMs() / 1000);
        send(res, json(429, { error: 'Too Many Requests' }, { 'retry-after': retryAfter }));
        return;
      }
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
      case 'reset':
        res.destroy();
        return;
      default:
    }
    const result = this.enqueue(body, fault === 'trickle' || fault === 'truncated' ? undefined : fault);
    // The answer goes out before the queue's status or any execution event (server.py publishes those
    // from its message loop, after the handler returned).
    res.once('close', () =>
      setImmediate(() => {
        this.broadcastStatus();
        this.pump();
      }),
    );
    if (fault === 'trickle') sendTrickle(res, result, this.ctx.trickleMs);
    else if (fault === 'truncated') sendTruncated(res, result);
    else send(res, result);
  }

  private enqueue(body: unknown, fault: ContentFault): Reply {
    const request = (body ?? {}) as { prompt?: unknown; client_id?: unknown; prompt_id?: unknown };
    if (typeof request.prompt !== 'object' || request.prompt === null)
      return comfyError('no_prompt', 'No prompt provided', 'No prompt provided');
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
    const valid = validatePrompt(workflow, (name) => this.files.has(fileKey('input', '', name)));
    if (!valid.ok) return json(400, { error: valid.error, node_errors: valid.nodeErrors });
    this.gpu?.recordAcceptance(this.ctx.now());
    const number = this.number;
    this.number += 1;
    const extraData = {
      ...(typeof request.client_id === 'string' ? { client_id: request.client_id } : {}),
      create_time: this.ctx.now(),
    };
    const { outputs, order } = valid;
    this.pending.push({ number, promptId, workflow, extraData, outputs, order, fault });
    return json(200, { prompt_id: promptId, number, node_errors: {} });
  }

  /** Starts queued prompts while GPU slots are free. */
  private pump(): void {
    const gpu = this.gpu;
    if (!gpu) return;
    while (this.pending.length > 0 && gpu.inFlightNow < gpu.key.concurrency) {
      const item = this.pending.shift();
      if (item) void this.execute(item, gpu.holdSlot());
    }
  }

  private async execute(item: QueueItem, release: () => void): Promise<void> {
    const sid = item.extraData.client_id;
    const cache = this.cache;
    const mine = signatures(item.workflow, item.order);
    const run = new PromptRun(item, {
      now: () => this.ctx.now(),
      emit: (type, data) => {
        if (sid) this.sendTo(sid, type, data);
      },
      emitBinary: (frame) => {
        if (sid) this.sendBytes(sid, frame);
      },
      wait: (ms) => new Promise((resolve) => this.schedule(resolve, ms)),
      store: (bytes, type) => this.storeResult(bytes, type),
      input: (name) => this.files.get(fileKey('input', '', name)),
      latencyMs: this.provider.latency(),
      cached: new Set(item.order.filter((id) => cache.get(id) === mine.get(id))),
    });
    const entry = { run, item, release };
    this.running.set(item.promptId, entry);
    this.broadcastStatus();
    const history = await run.run();
    // A restart while it ran dropped this prompt; its results must not reappear.
    if (this.running.get(item.promptId) !== entry) return;
    this.cache = new Map(run.executed.map((id) => [id, mine.get(id) ?? '']));
    this.running.delete(item.promptId);
    release();
    this.history.set(item.promptId, history);
    if (sid) this.sendTo(sid, 'executing', { node: null, prompt_id: item.promptId });
    this.broadcastStatus();
    this.pump();
  }

  private storeResult(bytes: Buffer, type: 'output' | 'temp'): ImageRef {
    this.fileCounter += 1;
    const filename = `ComfyUI_${type === 'temp' ? 'temp_' : ''}${String(this.fileCounter).padStart(5, '0')}_.png`;
    this.files.set(fileKey(type, '', filename), bytes);
    return { filename, subfolder: '', type };
  }

  /** server.py `post_queue`: `clear` wipes the pending queue, `delete` removes pending prompts by id. */
  private postQueue(res: ServerResponse, body: Record<string, unknown> | undefined): void {
    if (!body) return send(res, text(500, '500 Internal Server Error'));
    if (body.clear === true) this.pending = [];
    if (Array.isArray(body.delete)) {
      for (const id of body.delete) {
        const before = this.pending.length;
        this.pending = this.pending.filter((item) => item.promptId !== id);
        if (this.pending.length < before) this.seen.deleted.push(String(id));
      }
    }
    this.broadcastStatus();
    send(res, text(200, ''));
  }

  /** server.py `post_interrupt`: with a `prompt_id`, only when that prompt runs; without, whatever runs. */
  private postInterrupt(res: ServerResponse, body: Record<string, unknown> | undefined): void {
    const target = typeof body?.prompt_id === 'string' && body.prompt_id ? body.prompt_id : null;
    const interrupted: string[] = [];
    for (const [id, { run }] of this.running) {
      if (target !== null && id !== target) continue;
      run.interrupt();
      interrupted.push(id);
    }
    this.seen.interrupts.push({ prompt_id: target, interrupted });
    send(res, text(200, ''));
  }

  /** server.py `get_history`: every entry, or the newest `max_items`. */
  private historyList(url: URL): Record<string, HistoryEntry> {
    const max = Number(url.searchParams.get('max_items'));
    const entries = [...this.history];
    return Object.fromEntries(Number.isInteger(max) && max > 0 ? entries.slice(-max) : entries);
  }

  private postHistory(res: ServerResponse, body: Record<string, unknown> | undefined): void {
    if (!body) return send(res, text(500, '500 Internal Server Error'));
    if (body.clear === true) this.history.clear();
    if (Array.isArray(body.delete)) for (const id of body.delete) this.history.delete(String(id));
    send(res, text(200, ''));
  }

  private queueInfo(): { exec_info: { queue_remaining: number } } {
    return { exec_info: { queue_remaining: this.pending.length + this.running.size } };
  }

  /** server.py `get_queue`: rows `[number, prompt_id, prompt, extra_data, outputs_to_execute]`. */
  private queueSnapshot(): { queue_running: unknown[]; queue_pending: unknown[] } {
    const row = (item: QueueItem): unknown[] => [
      item.number,
      item.promptId,
      item.workflow,
      item.extraData,
      item.outputs,
    ];
    return {
      queue_running: [...this.running.values()].map(({ item }) => row(item)),
      queue_pending: this.pending.map(row),
    };
  }

  private broadcastStatus(): void {
    for (const sid of this.sockets.keys()) this.sendTo(sid, 'status', { status: this.queueInfo() });
  }

  private sendTo(sid: string, type: string, data: Record<string, unknown>): void {
    const ws = this.sockets.get(sid);
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type, data }));
  }

  private sendBytes(sid: string, frame: Buffer): void {
    const ws = this.sockets.get(sid);
    if (ws && ws.readyState === ws.OPEN) ws.send(frame, { binary: true });
  }

  private schedule(fn: () => void, ms: number): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
  }
}

function fileKey(type: string, subfolder: string, filename: string): string {
  return `${type}\u0000${subfolder}\u0000${filename}`;
}

/** aiohttp's `await request.json()`; a body that is not a JSON object makes server.py answer 500. */
async function readJson(req: IncomingMessage): Promise<Record<string, unknown> | undefined> {
  const value = parseJson(await readBody(req));
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
