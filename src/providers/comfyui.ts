/**
 * A ComfyUI server (local GPU or a hosted one with the same API). A call uploads its input images, opens
 * the websocket, queues the workflow with `POST /prompt`, follows progress on the socket (polling
 * `/history` and `/queue` as a fallback), then downloads the outputs through `/view`.
 *
 * The prompt_id is stored through `saveRemoteRef` before waiting, so a retried job reconciles: a finished
 * prompt returns its outputs without running again, a queued one is waited for, and one ComfyUI no longer
 * knows (it restarted) is queued again.
 */
import { Blob } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { fetch, FormData } from 'undici';
import WebSocket from 'ws';
import {
  decodeAll,
  Deadline,
  guardAdapter,
  isRecord,
  isRetryableStatus,
  outcomeForThrown,
  parseJsonText,
  parseRetryAfterMs,
  sleep,
  snippet,
} from './http-util.ts';
import type { ProviderAdapter, ProviderCall, ProviderOutcome } from './types.ts';

export interface ComfyUIProviderOptions {
  /** e.g. http://127.0.0.1:8188 */
  baseUrl: string;
  /**
   * The workflow in API format, already loaded. String values may hold `{{prompt}}`, `{{seed}}`,
   * `{{batch_size}}`, `{{input_image}}` (first uploaded input), `{{input_image_2}}`…, `{{input_<role>}}` and
   * `{{<param>}}` for any string or number in the call's params. A value that is exactly one placeholder
   * takes the value's own type, so `"{{seed}}"` becomes a number.
   */
  workflow: object;
  timeoutMs: number;
  /** How often to check /history and /queue while waiting; the websocket usually answers first. Default 1000. */
  pollIntervalMs?: number;
}

export function createComfyUIProvider(options: ComfyUIProviderOptions): ProviderAdapter {
  return {
    type: 'comfyui',
    call: guardAdapter('comfyui', (call) => callComfyUI(options, call)),
  };
}

/** Replaces `{{name}}` placeholders in every string of a workflow template (see ComfyUIProviderOptions). */
export function fillWorkflow(template: unknown, values: Record<string, string | number>): unknown {
  if (typeof template === 'string') {
    const whole = /^\{\{(\w+)\}\}$/.exec(template);
    if (whole?.[1] !== undefined && Object.hasOwn(values, whole[1])) return values[whole[1]];
    return template.replace(/\{\{(\w+)\}\}/g, (placeholder, name: string) =>
      Object.hasOwn(values, name) ? String(values[name]) : placeholder,
    );
  }
  if (Array.isArray(template)) return template.map((item) => fillWorkflow(item, values));
  if (isRecord(template))
    return Object.fromEntries(
      Object.entries(template).map(([key, value]) => [key, fillWorkflow(value, values)]),
    );
  return template;
}

interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
}

type HistoryEntry = Record<string, unknown>;

class ComfyClient {
  readonly baseUrl: string;
  private readonly headers: Record<string, string>;
  private readonly deadline: Deadline;

  constructor(baseUrl: string, secret: string | undefined, deadline: Deadline) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    // A local ComfyUI has no keys; one behind an authenticating proxy gets the secret as a bearer token.
    this.headers = secret ? { authorization: `Bearer ${secret}` } : {};
    this.deadline = deadline;
  }

  get socketHeaders(): Record<string, string> {
    return this.headers;
  }

  async request(
    path: string,
    init: { method?: string; body?: string | FormData; json?: boolean } = {},
  ): Promise<{ status: number; text: string; headers: { get(name: string): string | null } }> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method: init.method ?? 'GET',
      headers: { ...this.headers, ...(init.json ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: init.body } : {}),
      signal: this.deadline.signal,
    });
    return { status: response.status, text: await response.text(), headers: response.headers };
  }

  async bytes(path: string): Promise<{ status: number; bytes: Buffer }> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      headers: this.headers,
      signal: this.deadline.signal,
    });
    return { status: response.status, bytes: Buffer.from(await response.arrayBuffer()) };
  }

  /** The history entry of a prompt, or undefined when ComfyUI has none (yet, or any more). */
  async history(promptId: string): Promise<HistoryEntry | undefined> {
    const answer = await this.request(`/history/${encodeURIComponent(promptId)}`);
    if (answer.status !== 200) throw new ComfyHttpError('GET /history', answer.status, answer.text);
    const parsed = parseJsonText(answer.text);
    if (!parsed.ok || !isRecord(parsed.value)) throw new ComfyMalformedError('GET /history');
    const entry = parsed.value[promptId];
    return isRecord(entry) ? entry : undefined;
  }

  async isQueued(promptId: string): Promise<boolean> {
    const answer = await this.request('/queue');
    if (answer.status !== 200) throw new ComfyHttpError('GET /queue', answer.status, answer.text);
    const parsed = parseJsonText(answer.text);
    if (!parsed.ok || !isRecord(parsed.value)) throw new ComfyMalformedError('GET /queue');
    const rows = [parsed.value.queue_running, parsed.value.queue_pending].flatMap((list) =>
      Array.isArray(list) ? list : [],
    );
    return rows.some((row) => Array.isArray(row) && row[1] === promptId);
  }
}

/** An HTTP answer that decides the call's outcome on its own. */
class ComfyHttpError extends Error {
  readonly status: number;
  readonly body: string;
  readonly retryAfterMs: number | undefined;
  constructor(what: string, status: number, body: string, retryAfterMs?: number) {
    super(`comfyui ${what} answered ${status}: ${snippet(body)}`);
    this.status = status;
    this.body = body;
    this.retryAfterMs = retryAfterMs;
  }
}

class ComfyMalformedError extends Error {
  constructor(what: string) {
    super(`comfyui ${what}: malformed JSON`);
  }
}

function outcomeOfHttpError(error: ComfyHttpError): ProviderOutcome {
  const retry = error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {};
  if (error.status === 429) return { kind: 'rate_limited', message: error.message, ...retry };
  if (isRetryableStatus(error.status)) return { kind: 'transient', message: error.message, ...retry };
  return {
    kind: 'permanent',
    reason: error.status === 400 ? 'invalid_workflow' : `http_${error.status}`,
    message: error.message,
  };
}

async function callComfyUI(options: ComfyUIProviderOptions, call: ProviderCall): Promise<ProviderOutcome> {
  const deadline = new Deadline(call.signal, options.timeoutMs);
  const client = new ComfyClient(options.baseUrl, call.key.secret, deadline);
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  // Stable per job, so a retry's socket receives the events of the prompt an earlier attempt queued.
  const clientId = `darkroom-${call.jobId}`;
  let socket: PromptSocket | undefined;
  try {
    if (call.remoteRef) {
      const entry = await client.history(call.remoteRef);
      if (entry && succeeded(entry)) return await collectOutputs(client, entry, call.count);
      if (!entry && (await client.isQueued(call.remoteRef))) {
        socket = await PromptSocket.open(client, clientId, deadline);
        socket.follow(call.remoteRef, call.onProgress);
        return await settle(client, socket, call.remoteRef, call.count, pollIntervalMs, deadline);
      }
      // Unknown (ComfyUI restarted and lost it) or finished with an error: run it again.
    }
    socket = await PromptSocket.open(client, clientId, deadline);
    const uploaded = await uploadInputs(client, call);
    const workflow = fillWorkflow(options.workflow, placeholderValues(call, uploaded));
    // Recent ComfyUI accepts a client-chosen prompt_id: storing it before queueing leaves no window in which
    // a crash could forget a queued prompt, and following it before queueing misses no progress event.
    const proposedId = randomUUID();
    await call.saveRemoteRef?.(proposedId);
    socket.follow(proposedId, call.onProgress);
    const promptId = await queuePrompt(client, workflow, clientId, proposedId);
    if (promptId !== proposedId) {
      // An older server minted its own id.
      await call.saveRemoteRef?.(promptId);
      socket.follow(promptId, call.onProgress);
    }
    return await settle(client, socket, promptId, call.count, pollIntervalMs, deadline);
  } catch (error) {
    if (error instanceof ComfyHttpError) return outcomeOfHttpError(error);
    if (error instanceof ComfyMalformedError) return { kind: 'transient', message: error.message };
    return outcomeForThrown(error, deadline, 'comfyui');
  } finally {
    socket?.close();
    deadline.dispose();
  }
}

/** Placeholders darkroom fills itself: the prompt, seed, batch size and every input image. */
function isOwnPlaceholder(name: string): boolean {
  return name === 'prompt' || name === 'seed' || name === 'batch_size' || name.startsWith('input_');
}

function placeholderValues(
  call: ProviderCall,
  uploaded: Array<{ name: string; role: string }>,
): Record<string, string | number> {
  const values: Record<string, string | number> = {};
  for (const [name, value] of Object.entries(call.params)) {
    // darkroom's own names are never taken from params: `input_person` naming another user's upload made
    // ComfyUI load that user's photo.
    if (isOwnPlaceholder(name)) continue;
    if (typeof value === 'string' || typeof value === 'number') values[name] = value;
  }
  uploaded.forEach((file, index) => {
    values[`input_image_${index + 1}`] = file.name;
    values[`input_${file.role}`] ??= file.name;
  });
  if (uploaded[0]) values.input_image = uploaded[0].name;
  values.prompt = call.prompt;
  values.seed = call.seed;
  values.batch_size = call.count;
  return values;
}

const EXTENSION_BY_MIME: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
};

async function uploadInputs(
  client: ComfyClient,
  call: ProviderCall,
): Promise<Array<{ name: string; role: string }>> {
  const uploaded: Array<{ name: string; role: string }> = [];
  for (const [index, input] of call.inputs.entries()) {
    const form = new FormData();
    const filename = `darkroom-${call.jobId}-${index + 1}.${EXTENSION_BY_MIME[input.mime] ?? 'png'}`;
    form.append('image', new Blob([input.data], { type: input.mime }), filename);
    form.append('type', 'input');
    form.append('overwrite', 'true');
    const answer = await client.request('/upload/image', { method: 'POST', body: form });
    if (answer.status !== 200) throw new ComfyHttpError('POST /upload/image', answer.status, answer.text);
    const parsed = parseJsonText(answer.text);
    if (!parsed.ok || !isRecord(parsed.value) || typeof parsed.value.name !== 'string')
      throw new ComfyMalformedError('POST /upload/image');
    const subfolder = typeof parsed.value.subfolder === 'string' ? parsed.value.subfolder : '';
    uploaded.push({
      name: subfolder ? `${subfolder}/${parsed.value.name}` : parsed.value.name,
      role: input.role,
    });
  }
  return uploaded;
}

async function queuePrompt(
  client: ComfyClient,
  workflow: unknown,
  clientId: string,
  proposedId: string,
): Promise<string> {
  const answer = await client.request('/prompt', {
    method: 'POST',
    json: true,
    body: JSON.stringify({ prompt: workflow, client_id: clientId, prompt_id: proposedId }),
  });
  if (answer.status !== 200) {
    throw new ComfyHttpError(
      'POST /prompt',
      answer.status,
      describePromptError(answer.text),
      parseRetryAfterMs(answer.headers.get('retry-after')),
    );
  }
  const parsed = parseJsonText(answer.text);
  if (!parsed.ok || !isRecord(parsed.value) || typeof parsed.value.prompt_id !== 'string')
    throw new ComfyMalformedError('POST /prompt');
  return parsed.value.prompt_id;
}

/** `{ error: { type, message, details }, node_errors }` as one line. */
function describePromptError(text: string): string {
  const parsed = parseJsonText(text);
  if (!parsed.ok || !isRecord(parsed.value)) return text;
  const error = isRecord(parsed.value.error) ? parsed.value.error : undefined;
  const nodeDetails = isRecord(parsed.value.node_errors)
    ? Object.values(parsed.value.node_errors).flatMap((node) =>
        isRecord(node) && Array.isArray(node.errors)
          ? node.errors.filter(isRecord).map((e) => String(e.details ?? e.message ?? ''))
          : [],
      )
    : [];
  return [error?.type, error?.message, error?.details, ...nodeDetails]
    .filter((part) => typeof part === 'string' && part)
    .join(': ');
}

function statusOf(entry: HistoryEntry): Record<string, unknown> {
  return isRecord(entry.status) ? entry.status : {};
}

function succeeded(entry: HistoryEntry): boolean {
  const status = statusOf(entry);
  // History written by old ComfyUI versions has no status; having an entry then means it finished.
  return status.status_str === undefined ? true : status.status_str === 'success';
}

/** Waits until the prompt has a history entry, then turns it into the outcome. */
async function settle(
  client: ComfyClient,
  socket: PromptSocket,
  promptId: string,
  count: number,
  pollIntervalMs: number,
  deadline: Deadline,
): Promise<ProviderOutcome> {
  for (;;) {
    const seen = socket.signals;
    const entry = await client.history(promptId);
    if (entry) return succeeded(entry) ? await collectOutputs(client, entry, count) : failureOf(entry);
    if (!(await client.isQueued(promptId))) {
      // It may have finished between the two requests.
      const late = await client.history(promptId);
      if (late) return succeeded(late) ? await collectOutputs(client, late, count) : failureOf(late);
      return {
        kind: 'transient',
        message: `comfyui: prompt ${promptId} is neither queued nor in history (ComfyUI restarted?)`,
      };
    }
    await Promise.race([socket.nextSignal(seen), sleep(pollIntervalMs, deadline)]);
  }
}

function failureOf(entry: HistoryEntry): ProviderOutcome {
  const messages = Array.isArray(statusOf(entry).messages) ? (statusOf(entry).messages as unknown[]) : [];
  for (const message of messages) {
    if (!Array.isArray(message) || !isRecord(message[1])) continue;
    const [type, data] = message as [unknown, Record<string, unknown>];
    if (type === 'execution_interrupted')
      return { kind: 'transient', message: 'comfyui: execution was interrupted' };
    if (type === 'execution_error') {
      const text = `comfyui: execution error in node ${String(data.node_id)} (${String(data.node_type)}): ${String(data.exception_type)}: ${snippet(String(data.exception_message ?? ''))}`;
      // Running out of GPU memory depends on what else ran; anything else will fail the same way again.
      if (
        /OutOfMemory|out of memory/i.test(`${String(data.exception_type)} ${String(data.exception_message)}`)
      )
        return { kind: 'transient', message: text };
      return { kind: 'permanent', reason: 'execution_error', message: text };
    }
  }
  return {
    kind: 'permanent',
    reason: 'execution_error',
    message: `comfyui: prompt finished with status ${String(statusOf(entry).status_str)}`,
  };
}

async function collectOutputs(
  client: ComfyClient,
  entry: HistoryEntry,
  count: number,
): Promise<ProviderOutcome> {
  const refs: ImageRef[] = [];
  const outputs = isRecord(entry.outputs) ? entry.outputs : {};
  for (const output of Object.values(outputs)) {
    if (!isRecord(output) || !Array.isArray(output.images)) continue;
    for (const image of output.images) {
      if (isRecord(image) && typeof image.filename === 'string') {
        refs.push({
          filename: image.filename,
          subfolder: typeof image.subfolder === 'string' ? image.subfolder : '',
          type: typeof image.type === 'string' ? image.type : 'output',
        });
      }
    }
  }
  // Preview nodes write `temp` images; saved results are `output`.
  const saved = refs.some((ref) => ref.type === 'output')
    ? refs.filter((ref) => ref.type === 'output')
    : refs;
  if (saved.length === 0)
    return { kind: 'permanent', reason: 'no_image', message: 'comfyui: the prompt produced no image' };
  const buffers: Buffer[] = [];
  for (const ref of saved.slice(0, Math.max(1, count))) {
    const query = new URLSearchParams({ filename: ref.filename, subfolder: ref.subfolder, type: ref.type });
    const answer = await client.bytes(`/view?${query.toString()}`);
    // A file that history lists but /view cannot find is the server's trouble, worth another attempt.
    if (answer.status !== 200)
      throw new ComfyHttpError(
        'GET /view',
        answer.status === 404 ? 503 : answer.status,
        `cannot download ${ref.filename}`,
      );
    buffers.push(answer.bytes);
  }
  return decodeAll(buffers, 'comfyui');
}

/**
 * The `/ws?clientId=` socket: reports `progress` for a followed prompt and wakes the waiter when the
 * prompt finishes, fails, or the socket drops (the waiter then asks /history and /queue).
 */
class PromptSocket {
  private readonly ws: WebSocket;
  private readonly waiters = new Set<() => void>();
  private closed = false;
  /** How many wake-ups happened so far, so one that fires while the waiter is busy is not lost. */
  signals = 0;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('close', () => {
      this.closed = true;
      this.wake();
    });
    ws.on('error', () => undefined);
  }

  static async open(client: ComfyClient, clientId: string, deadline: Deadline): Promise<PromptSocket> {
    const url = new URL(`${client.baseUrl}/ws`);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('clientId', clientId);
    const ws = new WebSocket(url, { headers: client.socketHeaders });
    const opened = new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', (error) => reject(error));
      ws.once('unexpected-response', (_request, response) =>
        reject(new ComfyHttpError('websocket upgrade', response.statusCode ?? 502, '')),
      );
    });
    try {
      await Promise.race([opened, deadline.whenAborted()]);
    } catch (error) {
      ws.terminate();
      throw error;
    }
    return new PromptSocket(ws);
  }

  /** Forwards progress of one prompt to `onProgress` and wakes waiters when it ends, until the socket closes. */
  follow(promptId: string, onProgress: ((fraction: number) => void) | undefined): void {
    const listener = (raw: WebSocket.RawData, isBinary: boolean): void => {
      if (isBinary) return; // preview images
      const parsed = parseJsonText(raw.toString());
      if (!parsed.ok || !isRecord(parsed.value) || !isRecord(parsed.value.data)) return;
      const { type } = parsed.value;
      const data = parsed.value.data;
      if (data.prompt_id !== promptId) return;
      if (
        type === 'progress' &&
        typeof data.value === 'number' &&
        typeof data.max === 'number' &&
        data.max > 0
      ) {
        onProgress?.(Math.min(1, Math.max(0, data.value / data.max)));
      }
      const finished =
        type === 'execution_success' ||
        type === 'execution_error' ||
        type === 'execution_interrupted' ||
        (type === 'executing' && data.node === null);
      if (finished) this.wake();
    };
    this.ws.on('message', listener);
  }

  /** Resolves once a wake-up happened after `seen` (a terminal event or the socket dropping); never, once it has dropped. */
  nextSignal(seen: number): Promise<void> {
    if (this.signals > seen) return Promise.resolve();
    if (this.closed) return new Promise<void>(() => undefined);
    return new Promise<void>((resolve) => this.waiters.add(resolve));
  }

  close(): void {
    this.wake();
    this.ws.terminate();
  }

  private wake(): void {
    this.signals += 1;
    for (const resolve of this.waiters) resolve();
    this.waiters.clear();
  }
}
