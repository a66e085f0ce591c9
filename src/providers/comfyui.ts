/**
 * A ComfyUI server (local GPU or a hosted one with the same API). A call uploads its input images, opens
 * the websocket (or goes on without one when a proxy refuses it), queues the workflow with `POST /prompt`,
 * waits for the prompt's `/history` entry (woken by the socket, polling `/history` and `/queue`), then
 * downloads the outputs through `/view`. The call is answered (`onAnswered`: the GPU's slot frees) when
 * the history entry is in, before the downloads (comfyui-history.ts `outcomeOfEntry`).
 *
 * The prompt_id is stored through `saveRemoteRef` before waiting, so a retried job reconciles: a finished
 * prompt returns its outputs without running again, a queued one is waited for, and one ComfyUI no longer
 * knows (it restarted) is queued again. A call aborted because its task was canceled stops its prompt
 * (dequeued or interrupted); one aborted for a shutdown or a lost lease leaves it to the next attempt.
 */
import { randomUUID } from 'node:crypto';
import { ComfyClient, ComfyHttpError, ComfyMalformedError, outcomeOfHttpError } from './comfyui-client.ts';
import { outcomeOfEntry, settle, succeeded } from './comfyui-history.ts';
import { WorkflowProgress } from './comfyui-progress.ts';
import { openWatcher, type PromptWatcher } from './comfyui-socket.ts';
import { fillWorkflow, placeholderValues } from './comfyui-workflow.ts';
import { Deadline, describeError, guardAdapter, isRecord, outcomeForThrown } from './http-util.ts';
import { wasCanceled, type ProviderAdapter, type ProviderCall, type ProviderOutcome } from './types.ts';

export { fillWorkflow } from './comfyui-workflow.ts';

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
  /**
   * How often to ask /history and /queue while waiting without a websocket. Default 1000 ms; with a live
   * websocket five times less often, as a safety net.
   */
  pollIntervalMs?: number;
  /** How long the websocket may take to open before the call goes on by polling. Default 5000 ms. */
  socketOpenTimeoutMs?: number;
}

/** How long the requests that stop a canceled prompt may take (the call's own deadline is gone by then). */
const CANCEL_TIMEOUT_MS = 5_000;

export function createComfyUIProvider(options: ComfyUIProviderOptions): ProviderAdapter {
  return {
    type: 'comfyui',
    call: guardAdapter('comfyui', (call) => callComfyUI(options, call)),
  };
}

async function callComfyUI(options: ComfyUIProviderOptions, call: ProviderCall): Promise<ProviderOutcome> {
  const deadline = new Deadline(call.signal, options.timeoutMs);
  const client = new ComfyClient(options.baseUrl, call.key.secret, deadline);
  const pollIntervalMs = options.pollIntervalMs ?? 1000;
  const openTimeoutMs = Math.min(options.socketOpenTimeoutMs ?? 5000, options.timeoutMs);
  const progress = new WorkflowProgress(isRecord(options.workflow) ? Object.keys(options.workflow) : []);
  // Stable per job, so a retry's socket receives the events of the prompt an earlier attempt queued.
  const clientId = `darkroom-${call.jobId}`;
  let watcher: PromptWatcher | undefined;
  let promptId = call.remoteRef;
  try {
    if (call.remoteRef) {
      const entry = await client.history(call.remoteRef);
      if (entry && succeeded(entry)) return await outcomeOfEntry(client, entry, call.count, call.onAnswered);
      if (!entry && (await client.queuePlace(call.remoteRef)) !== 'absent') {
        watcher = await openWatcher(client, clientId, deadline, openTimeoutMs);
        watcher.follow(call.remoteRef, progress, call.onProgress);
        return await settle(
          client,
          watcher,
          call.remoteRef,
          call.count,
          pollIntervalMs,
          deadline,
          call.onAnswered,
        );
      }
      // Unknown (ComfyUI restarted and lost it) or finished with an error: run it again.
    }
    watcher = await openWatcher(client, clientId, deadline, openTimeoutMs);
    const uploaded = await client.uploadInputs(call);
    const workflow = fillWorkflow(options.workflow, placeholderValues(call, uploaded));
    // Recent ComfyUI accepts a client-chosen prompt_id: storing it before queueing leaves no window in which
    // a crash could forget a queued prompt, and following it before queueing misses no progress event.
    const proposedId = randomUUID();
    await call.saveRemoteRef?.(proposedId);
    promptId = proposedId;
    watcher.follow(proposedId, progress, call.onProgress);
    promptId = await client.queuePrompt(workflow, clientId, proposedId);
    if (promptId !== proposedId) {
      // An older server minted its own id.
      await call.saveRemoteRef?.(promptId);
      watcher.follow(promptId, progress, call.onProgress);
    }
    return await settle(client, watcher, promptId, call.count, pollIntervalMs, deadline, call.onAnswered);
  } catch (error) {
    if (wasCanceled(call.signal) && promptId) return await stopCanceled(client, promptId);
    if (error instanceof ComfyHttpError) return outcomeOfHttpError(error);
    if (error instanceof ComfyMalformedError) return { kind: 'transient', message: error.message };
    return outcomeForThrown(error, deadline, 'comfyui');
  } finally {
    watcher?.close();
    deadline.dispose();
  }
}

/** The task was canceled: free the GPU from its prompt, whether it still waits in the queue or runs. */
async function stopCanceled(client: ComfyClient, promptId: string): Promise<ProviderOutcome> {
  const canceled = (message: string): ProviderOutcome => ({
    kind: 'permanent',
    reason: 'canceled',
    message: `comfyui: canceled; ${message}`,
  });
  try {
    const place = await client.stopPrompt(promptId, AbortSignal.timeout(CANCEL_TIMEOUT_MS));
    if (place === 'running') return canceled(`prompt ${promptId} interrupted`);
    if (place === 'pending') return canceled(`prompt ${promptId} removed from the queue`);
    return canceled(`prompt ${promptId} was no longer queued`);
  } catch (error) {
    return canceled(`could not stop prompt ${promptId}: ${describeError(error)}`);
  }
}
