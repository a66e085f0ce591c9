/**
 * ComfyUI's `/ws?clientId=` websocket: progress of the prompts a call follows, and a wake-up for the
 * waiter when one ends. The socket is a convenience, not a requirement: when it cannot be opened (a proxy
 * refuses the upgrade, `/ws` answers 4xx, the connection resets, no answer in time) the call runs on
 * polling alone, and when it drops mid-call the waiter keeps polling.
 *
 * Frames follow server.py's `send_json` (`{type, data}` text) and `send_bytes` (binary: a 4-byte
 * big-endian event type, e.g. 1 = PREVIEW_IMAGE followed by a 4-byte image format and JPEG/PNG bytes);
 * binary frames are skipped.
 */
import WebSocket from 'ws';
import type { ComfyClient } from './comfyui-client.ts';
import type { WorkflowProgress } from './comfyui-progress.ts';
import { isRecord, parseJsonText, type Deadline } from './http-util.ts';

const TERMINAL_EVENTS = new Set(['execution_success', 'execution_error', 'execution_interrupted']);

/** How a waiter learns that something happened; polling alone never wakes it early. */
export interface PromptWatcher {
  /** False when no websocket is open: the waiter polls at its own pace. */
  readonly live: boolean;
  /** Wake-ups so far, so one that fires while the waiter is busy is not lost. */
  readonly signals: number;
  follow(
    promptId: string,
    progress: WorkflowProgress,
    onProgress: ((fraction: number) => void) | undefined,
  ): void;
  /** Resolves once a wake-up happened after `seen`; never, when no socket is open any more. */
  nextSignal(seen: number): Promise<void>;
  close(): void;
}

/** Opens the websocket, or returns a polling-only watcher when it cannot be opened within `openTimeoutMs`. */
export async function openWatcher(
  client: ComfyClient,
  clientId: string,
  deadline: Deadline,
  openTimeoutMs: number,
): Promise<PromptWatcher> {
  const url = new URL(`${client.baseUrl}/ws`);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.searchParams.set('clientId', clientId);
  const ws = new WebSocket(url, { headers: client.headers, handshakeTimeout: openTimeoutMs });
  const opened = await new Promise<boolean>((resolve) => {
    deadline.signal.addEventListener('abort', () => resolve(false), { once: true });
    ws.once('open', () => resolve(true));
    ws.once('error', () => resolve(false));
    ws.once('unexpected-response', (_request, response) => {
      response.resume();
      resolve(false);
    });
  });
  if (!opened || deadline.signal.aborted) {
    ws.on('error', () => undefined);
    ws.terminate();
    // The deadline decides the outcome; with a live deadline the call goes on without a socket.
    if (deadline.signal.aborted) throw deadline.signal.reason;
    return new PollingOnly();
  }
  return new PromptSocket(ws);
}

class PollingOnly implements PromptWatcher {
  readonly live = false;
  readonly signals = 0;
  follow(): void {}
  nextSignal(): Promise<void> {
    return new Promise<void>(() => undefined);
  }
  close(): void {}
}

class PromptSocket implements PromptWatcher {
  private readonly ws: WebSocket;
  private readonly waiters = new Set<() => void>();
  private closed = false;
  signals = 0;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('close', () => {
      this.closed = true;
      this.wake();
    });
    ws.on('error', () => undefined);
  }

  get live(): boolean {
    return !this.closed;
  }

  follow(
    promptId: string,
    progress: WorkflowProgress,
    onProgress: ((fraction: number) => void) | undefined,
  ): void {
    this.ws.on('message', (raw: WebSocket.RawData, isBinary: boolean) => {
      if (isBinary) return; // previews and other binary events
      const parsed = parseJsonText(raw.toString());
      if (!parsed.ok || !isRecord(parsed.value) || !isRecord(parsed.value.data)) return;
      const { type, data } = parsed.value;
      if (data.prompt_id !== promptId) return;
      const grown = progress.apply(type, data);
      if (grown !== undefined) onProgress?.(grown);
      if (
        (typeof type === 'string' && TERMINAL_EVENTS.has(type)) ||
        (type === 'executing' && data.node === null)
      )
        this.wake();
    });
  }

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
