/**
 * The contract between darkroom's workers and every AI backend.
 *
 * An adapter turns one admitted job (one provider call: a batch of images, or one
 * transform such as `beautify`) into a request in the provider's own wire format, and
 * classifies whatever happens into a {@link ProviderOutcome}. Adapters never throw for
 * provider behaviour: the scheduler's policy acts on the classification (a 429 cools the
 * key, a transient error is retried with backoff, a permanent one fails the images).
 * Adapters download any result URL at once: providers delete them quickly.
 */

export interface InputImage {
  data: Buffer;
  /** e.g. image/png, image/jpeg, image/webp */
  mime: string;
  /** Role name from the pipeline's `inputs` list, e.g. `person`, `garment`; `input` by default. */
  role: string;
}

export interface ProviderImage {
  data: Buffer;
  mime: string;
}

export interface ProviderKey {
  id: string;
  /** The resolved secret; undefined for the simulator or keyless local backends. Never log it. */
  secret: string | undefined;
}

export interface ProviderCall {
  taskId: string;
  jobId: string;
  /** Step name from the pipeline, e.g. `beautify`, `generate`. */
  step: string;
  prompt: string;
  inputs: InputImage[];
  /** How many images this call must return (the batch size; 1 for a transform step). */
  count: number;
  /** Deterministic seed for this call (task seed + first image index). */
  seed: number;
  /** First output index of this batch within the task, for naming and simulator variety. */
  firstIndex: number;
  params: Record<string, unknown>;
  key: ProviderKey;
  signal: AbortSignal;
  /** Fraction 0..1 of this call done, for providers that report progress (ComfyUI). */
  onProgress?: (fraction: number) => void;
  /**
   * A provider-side handle stored by an earlier attempt of this job (ComfyUI's prompt_id),
   * so a retried job can reconcile instead of submitting the same work twice.
   */
  remoteRef?: string | undefined;
  /** Persist a provider-side handle before waiting on it. */
  saveRemoteRef?: (ref: string) => Promise<void>;
  /**
   * Called at most once, when the provider's whole successful answer is in (its body read, result
   * URLs downloaded) and before its images are checked: the provider's concurrency slot frees
   * there. For ComfyUI, when the prompt's history entry is in (it finished executing: the GPU is
   * free), before its outputs are downloaded. An adapter that does not call it is answered when
   * `call()` returns.
   */
  onAnswered?: () => void;
}

export type ProviderFailure =
  | {
      kind: 'rate_limited';
      message: string;
      retryAfterMs?: number;
      /** Set when the key must rest longer than a short cool-down (a per-day quota), saying why. */
      rest?: string;
    }
  | { kind: 'transient'; message: string; retryAfterMs?: number }
  | { kind: 'permanent'; message: string; reason?: string }
  | { kind: 'timeout'; message: string };

export type ProviderOutcome =
  | {
      kind: 'success';
      images: ProviderImage[];
      /**
       * A partial success: fewer images than asked came back because some of the call's requests
       * failed (src/providers/fan-out.ts); this classifies the images still owed.
       */
      shortfall?: ProviderFailure;
    }
  | ProviderFailure;

export type ProviderOutcomeKind = ProviderOutcome['kind'];

export interface ProviderAdapter {
  /** `sim`, `gemini`, `openai`, `comfyui` */
  readonly type: string;
  call(call: ProviderCall): Promise<ProviderOutcome>;
  close?(): Promise<void>;
}

/**
 * Why a worker aborts a running call, as the call signal's `reason`. Only `canceled` asks the provider
 * to drop work it already started (ComfyUI: interrupt or dequeue the prompt); after `shutdown` or
 * `lease_lost` the job goes back to the queue and its next attempt reconciles through `remoteRef`.
 */
export type CallAbortReason = 'canceled' | 'shutdown' | 'lease_lost';

export class CallAborted extends Error {
  readonly reason: CallAbortReason;
  constructor(reason: CallAbortReason) {
    super(`call aborted: ${reason}`);
    this.name = 'CallAborted';
    this.reason = reason;
  }
}

/** True when the call was aborted because its task was canceled (not a timeout, shutdown or lost lease). */
export function wasCanceled(signal: AbortSignal): boolean {
  return signal.aborted && signal.reason instanceof CallAborted && signal.reason.reason === 'canceled';
}
