/**
 * Waiting for a queued prompt and turning its `/history` entry into the call's outcome. `/history/{id}`
 * and `/queue` are the source of truth; the websocket only makes the waiter look sooner.
 */
import { ComfyHttpError, type ComfyClient, type HistoryEntry } from './comfyui-client.ts';
import type { PromptWatcher } from './comfyui-socket.ts';
import { decodeAll, isRecord, sleep, snippet, type Deadline } from './http-util.ts';
import type { ProviderOutcome } from './types.ts';

/** With a live websocket, /history is only a safety net and is asked this many times less often. */
const LIVE_SOCKET_POLL_FACTOR = 5;

function statusOf(entry: HistoryEntry): Record<string, unknown> {
  return isRecord(entry.status) ? entry.status : {};
}

export function succeeded(entry: HistoryEntry): boolean {
  const status = statusOf(entry);
  // History written by old ComfyUI versions has no status; having an entry then means it finished.
  return status.status_str === undefined ? true : status.status_str === 'success';
}

/**
 * The prompt's history entry is in: ComfyUI's prompt worker writes it (`PromptQueue.task_done`, which
 * also takes the prompt off `currently_running`) as soon as `PromptExecutor.execute` returns, and only
 * then sends `executing` with `node: null` and takes the next prompt (comfyanonymous/ComfyUI main.py
 * `prompt_worker`). So the GPU is free from here: the call is answered (`onAnswered`), and downloading
 * its outputs through `/view`, a plain file read by the web server, no longer holds the GPU's slot.
 */
export function outcomeOfEntry(
  client: ComfyClient,
  entry: HistoryEntry,
  count: number,
  onAnswered: (() => void) | undefined,
): Promise<ProviderOutcome> {
  onAnswered?.();
  return succeeded(entry) ? collectOutputs(client, entry, count) : Promise.resolve(failureOf(entry));
}

/** Waits until the prompt has a history entry (or vanished), then turns it into the outcome. */
export async function settle(
  client: ComfyClient,
  watcher: PromptWatcher,
  promptId: string,
  count: number,
  pollIntervalMs: number,
  deadline: Deadline,
  onAnswered: (() => void) | undefined,
): Promise<ProviderOutcome> {
  for (;;) {
    const seen = watcher.signals;
    const entry = await client.history(promptId);
    if (entry) return outcomeOfEntry(client, entry, count, onAnswered);
    if ((await client.queuePlace(promptId)) === 'absent') {
      // It may have finished between the two requests.
      const late = await client.history(promptId);
      if (late) return outcomeOfEntry(client, late, count, onAnswered);
      return {
        kind: 'transient',
        message: `comfyui: prompt ${promptId} is neither queued nor in history (ComfyUI restarted?)`,
      };
    }
    const interval = watcher.live ? pollIntervalMs * LIVE_SOCKET_POLL_FACTOR : pollIntervalMs;
    await Promise.race([watcher.nextSignal(seen), sleep(interval, deadline)]);
  }
}

export function failureOf(entry: HistoryEntry): ProviderOutcome {
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

interface ImageRef {
  filename: string;
  subfolder: string;
  type: string;
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
