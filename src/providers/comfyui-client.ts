/**
 * ComfyUI's HTTP API as darkroom uses it, mirroring the handlers of comfyanonymous/ComfyUI `server.py`:
 * `POST /upload/image`, `POST /prompt`, `GET /history/{prompt_id}`, `GET /queue`, `POST /queue
 * {delete}`, `POST /interrupt {prompt_id}` and `GET /view`. Answers that decide a call's outcome on their
 * own are thrown as {@link ComfyHttpError} / {@link ComfyMalformedError}.
 */
import { Blob } from 'node:buffer';
import { fetch, FormData } from 'undici';
import {
  isRecord,
  isRetryableStatus,
  parseJsonText,
  parseRetryAfterMs,
  snippet,
  type Deadline,
} from './http-util.ts';
import type { ProviderCall, ProviderOutcome } from './types.ts';

export type HistoryEntry = Record<string, unknown>;

/** Where a prompt is in ComfyUI's queue: executing, waiting, or in neither list. */
export type QueuePlace = 'running' | 'pending' | 'absent';

/** An HTTP answer that decides the call's outcome on its own. */
export class ComfyHttpError extends Error {
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  constructor(what: string, status: number, body: string, retryAfterMs?: number) {
    super(`comfyui ${what} answered ${status}: ${snippet(body)}`);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

export class ComfyMalformedError extends Error {
  constructor(what: string) {
    super(`comfyui ${what}: malformed JSON`);
  }
}

export function outcomeOfHttpError(error: ComfyHttpError): ProviderOutcome {
  const retry = error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {};
  if (error.status === 429) return { kind: 'rate_limited', message: error.message, ...retry };
  if (isRetryableStatus(error.status)) return { kind: 'transient', message: error.message, ...retry };
  return {
    kind: 'permanent',
    reason: error.status === 400 ? 'invalid_workflow' : `http_${error.status}`,
    message: error.message,
  };
}

interface Answer {
  status: number;
  text: string;
  headers: { get(name: string): string | null };
}

export class ComfyClient {
  readonly baseUrl: string;
  readonly headers: Record<string, string>;
  private readonly deadline: Deadline;

  constructor(baseUrl: string, secret: string | undefined, deadline: Deadline) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    // A local ComfyUI has no keys; one behind an authenticating proxy gets the secret as a bearer token.
    this.headers = secret ? { authorization: `Bearer ${secret}` } : {};
    this.deadline = deadline;
  }

  /** `signal` replaces the call's deadline, for the requests a cancel sends after the call was aborted. */
  async request(
    path: string,
    init: { method?: string; body?: string | FormData; json?: boolean; signal?: AbortSignal } = {},
  ): Promise<Answer> {
    const response = await fetch(`${this.baseUrl}${path}`, {
      method: init.method ?? 'GET',
      headers: { ...this.headers, ...(init.json ? { 'content-type': 'application/json' } : {}) },
      ...(init.body !== undefined ? { body: init.body } : {}),
      signal: init.signal ?? this.deadline.signal,
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
    const value = this.parse('GET /history', answer);
    const entry = value[promptId];
    return isRecord(entry) ? entry : undefined;
  }

  /** `GET /queue` answers `{queue_running, queue_pending}`, rows `[number, prompt_id, prompt, extra_data, outputs]`. */
  async queuePlace(promptId: string, signal?: AbortSignal): Promise<QueuePlace> {
    const answer = await this.request('/queue', signal ? { signal } : {});
    const value = this.parse('GET /queue', answer);
    const holds = (list: unknown): boolean =>
      Array.isArray(list) && list.some((row) => Array.isArray(row) && row[1] === promptId);
    if (holds(value.queue_running)) return 'running';
    return holds(value.queue_pending) ? 'pending' : 'absent';
  }

  /**
   * Stops one prompt: a waiting one leaves the queue (`POST /queue {delete}`), a running one is
   * interrupted (`POST /interrupt {prompt_id}`: recent servers interrupt only that prompt; older ones
   * ignore the body and interrupt whatever runs, so it is sent only when /queue shows this one running).
   * A waiting prompt may start between the look and the delete (another prompt was just interrupted), so
   * it looks again. Returns where the prompt was stopped, `absent` when it was neither queued nor running.
   */
  async stopPrompt(promptId: string, signal: AbortSignal): Promise<QueuePlace> {
    let stopped: QueuePlace = 'absent';
    for (let look = 0; look < 3; look += 1) {
      const place = await this.queuePlace(promptId, signal);
      if (place === 'absent') return stopped;
      const [path, body] =
        place === 'pending' ? ['/queue', { delete: [promptId] }] : ['/interrupt', { prompt_id: promptId }];
      const answer = await this.request(path, {
        method: 'POST',
        json: true,
        body: JSON.stringify(body),
        signal,
      });
      if (answer.status !== 200) throw new ComfyHttpError(`POST ${path}`, answer.status, answer.text);
      stopped = place;
      if (place === 'running') return stopped;
    }
    return stopped;
  }

  async queuePrompt(workflow: unknown, clientId: string, proposedId: string): Promise<string> {
    const answer = await this.request('/prompt', {
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
    const value = this.parse('POST /prompt', answer);
    if (typeof value.prompt_id !== 'string') throw new ComfyMalformedError('POST /prompt');
    return value.prompt_id;
  }

  /** Uploads the call's inputs to ComfyUI's `input` folder; returns their names as LoadImage wants them. */
  async uploadInputs(call: ProviderCall): Promise<Array<{ name: string; role: string }>> {
    const uploaded: Array<{ name: string; role: string }> = [];
    for (const [index, input] of call.inputs.entries()) {
      const form = new FormData();
      const filename = `darkroom-${call.jobId}-${index + 1}.${EXTENSION_BY_MIME[input.mime] ?? 'png'}`;
      form.append('image', new Blob([input.data], { type: input.mime }), filename);
      form.append('type', 'input');
      form.append('overwrite', 'true');
      const answer = await this.request('/upload/image', { method: 'POST', body: form });
      const value = this.parse('POST /upload/image', answer);
      if (typeof value.name !== 'string') throw new ComfyMalformedError('POST /upload/image');
      const subfolder = typeof value.subfolder === 'string' ? value.subfolder : '';
      uploaded.push({ name: subfolder ? `${subfolder}/${value.name}` : value.name, role: input.role });
    }
    return uploaded;
  }

  private parse(what: string, answer: Answer): Record<string, unknown> {
    if (answer.status !== 200) throw new ComfyHttpError(what, answer.status, answer.text);
    const parsed = parseJsonText(answer.text);
    if (!parsed.ok || !isRecord(parsed.value)) throw new ComfyMalformedError(what);
    return parsed.value;
  }
}

const EXTENSION_BY_MIME: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
};

/** server.py's 400 body `{ error: { type, message, details }, node_errors }` as one line. */
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
  const head = typeof parsed.value.error === 'string' ? [parsed.value.error] : [];
  return [...head, error?.type, error?.message, error?.details, ...nodeDetails]
    .filter((part) => typeof part === 'string' && part)
    .join(': ');
}
