/**
 * The in-process simulated provider: waits like a real one, fails at a configured rate,
 * and returns real PNGs, so darkroom runs end to end with no API key.
 *
 * Prompts can carry fault directives for deterministic tests (see docs/images.md):
 * `[sim:permanent]`, `[sim:fail-index=N]`, `[sim:transient]`, `[sim:rate-limited]` and
 * `[sim:rate-limited=MS]`.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { mulberry32 } from '../images/prng.ts';
import { synthesizeImage, type SynthOptions } from '../images/synth.ts';
import { Deadline } from './http-util.ts';
import type { ProviderAdapter, ProviderCall, ProviderImage, ProviderOutcome } from './types.ts';

export interface SimProviderOptions {
  /**
   * Mean time a call takes, generation included (as a real provider's latency): the images are
   * rendered from the call's start, and it answers at the later of the latency and the rendering.
   */
  latencyMs: number;
  /** Each call takes latencyMs plus a uniform offset in [-jitterMs, +jitterMs] (never below 0). */
  jitterMs: number;
  /** Probability 0..1 that a call ends in a transient error. */
  errorRate: number;
  /** Output size unless the call's params say otherwise; 512 by default. */
  width?: number;
  height?: number;
  /** Seed of the default PRNG, so runs are reproducible. Ignored when `random` is given. */
  seed?: number;
  /** Source of randomness in [0, 1) for latency jitter and errors. */
  random?: () => number;
  /** Waits ms; may reject or resolve early when signal aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Renders one result image; synthesizeImage by default (tests hold it). */
  render?: (opts: SynthOptions) => Promise<Buffer>;
  /** The call's time budget (the provider's `timeoutMs`): past it the outcome is `timeout`. None by default. */
  timeoutMs?: number;
}

const DEFAULT_SIDE = 512;
const MAX_SIDE = 4096;
const DEFAULT_SEED = 0x5eed;
const DEFAULT_RETRY_AFTER_MS = 1000;

export function createSimProvider(opts: SimProviderOptions): ProviderAdapter {
  checkOptions(opts);
  const random = opts.random ?? mulberry32(opts.seed ?? DEFAULT_SEED);
  const sleep = opts.sleep ?? abortableSleep;
  const render = opts.render ?? synthesizeImage;
  const defaultWidth = opts.width ?? DEFAULT_SIDE;
  const defaultHeight = opts.height ?? DEFAULT_SIDE;

  return {
    type: 'sim',
    async call(call: ProviderCall): Promise<ProviderOutcome> {
      const deadline = opts.timeoutMs === undefined ? undefined : new Deadline(call.signal, opts.timeoutMs);
      try {
        return await simulate(call, deadline?.signal ?? call.signal, () => abortedOutcome(call, deadline));
      } finally {
        deadline?.dispose();
      }
    },
  };

  async function simulate(
    call: ProviderCall,
    signal: AbortSignal,
    aborted: () => ProviderOutcome,
  ): Promise<ProviderOutcome> {
    if (signal.aborted) return aborted();
    // Both draws happen on every call, so directives never shift the random sequence.
    const waitMs = Math.max(0, opts.latencyMs + (random() * 2 - 1) * opts.jitterMs);
    const errorRoll = random();
    const failure = failureOf(call, errorRoll);
    // Rendering starts with the call, as a real provider's generation fills its latency.
    const rendering = failure ? undefined : renderAll(call);
    rendering?.catch(() => {});

    try {
      await sleep(waitMs, signal);
    } catch (error) {
      if (signal.aborted) return aborted();
      return { kind: 'transient', message: `simulated provider wait failed: ${String(error)}` };
    }
    if (signal.aborted) return aborted();
    if (failure) return failure;

    let images: ProviderImage[];
    try {
      images = (await rendering!).map((data) => ({ data, mime: 'image/png' }));
    } catch (error) {
      return { kind: 'transient', message: `simulated provider could not render: ${String(error)}` };
    }
    if (signal.aborted) return aborted();
    return { kind: 'success', images };
  }

  function failureOf(call: ProviderCall, errorRoll: number): ProviderOutcome | undefined {
    const fault = faultFromDirectives(call);
    if (fault) return fault;
    if (errorRoll < opts.errorRate) return { kind: 'transient', message: 'simulated provider error' };
    if (!Number.isInteger(call.count) || call.count < 1) {
      return { kind: 'permanent', message: `invalid image count ${call.count}`, reason: 'invalid_request' };
    }
    return undefined;
  }

  function renderAll(call: ProviderCall): Promise<Buffer[]> {
    const width = sideParam(call.params['width']) ?? defaultWidth;
    const height = sideParam(call.params['height']) ?? defaultHeight;
    const first = call.inputs[0];
    const tint = first ? createHash('sha256').update(first.data).digest('hex') : undefined;
    return Promise.all(
      Array.from({ length: call.count }, (_, i) =>
        render({
          prompt: call.prompt,
          index: call.firstIndex + i,
          seed: call.seed,
          width,
          height,
          ...(tint === undefined ? {} : { tint }),
        }),
      ),
    );
  }
}

function checkOptions(opts: SimProviderOptions): void {
  if (!(opts.latencyMs >= 0)) throw new RangeError(`latencyMs must be >= 0, got ${opts.latencyMs}`);
  if (!(opts.jitterMs >= 0)) throw new RangeError(`jitterMs must be >= 0, got ${opts.jitterMs}`);
  if (!(opts.errorRate >= 0 && opts.errorRate <= 1)) {
    throw new RangeError(`errorRate must be between 0 and 1, got ${opts.errorRate}`);
  }
  for (const [name, side] of [
    ['width', opts.width],
    ['height', opts.height],
  ] as const) {
    if (side !== undefined && sideParam(side) === undefined) {
      throw new RangeError(`${name} must be an integer between 1 and ${MAX_SIDE}, got ${side}`);
    }
  }
}

function sideParam(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_SIDE
    ? value
    : undefined;
}

/** A timeout only when the call's own budget ran out (or the caller's signal was a timeout). */
function abortedOutcome(call: ProviderCall, deadline: Deadline | undefined): ProviderOutcome {
  const timedOut = deadline
    ? deadline.timedOut
    : call.signal.reason instanceof Error && call.signal.reason.name === 'TimeoutError';
  return timedOut
    ? { kind: 'timeout', message: `simulated provider: no answer within ${deadline?.timeoutMs ?? '?'} ms` }
    : { kind: 'transient', message: 'simulated provider call aborted by the caller' };
}

async function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  await delay(ms, undefined, { signal });
}

const PERMANENT = '[sim:permanent]';
const TRANSIENT = '[sim:transient]';
const RATE_LIMITED = /\[sim:rate-limited(?:=(\d+))?\]/;
const FAIL_INDEX = /\[sim:fail-index=(\d+)\]/g;

/** Deterministic faults requested in the prompt; undefined when there are none for this call. */
export function faultFromDirectives(
  call: Pick<ProviderCall, 'prompt' | 'firstIndex' | 'count'>,
): ProviderOutcome | undefined {
  const { prompt } = call;
  if (!prompt.includes('[sim:')) return undefined;
  if (prompt.includes(PERMANENT)) {
    return { kind: 'permanent', message: 'simulated content refusal', reason: 'content_policy' };
  }
  for (const match of prompt.matchAll(FAIL_INDEX)) {
    const index = Number(match[1]);
    if (index >= call.firstIndex && index < call.firstIndex + call.count) {
      return {
        kind: 'permanent',
        message: `simulated failure of output index ${index}`,
        reason: 'simulated_failure',
      };
    }
  }
  const rateLimited = RATE_LIMITED.exec(prompt);
  if (rateLimited) {
    const retryAfterMs = rateLimited[1] === undefined ? DEFAULT_RETRY_AFTER_MS : Number(rateLimited[1]);
    return { kind: 'rate_limited', message: 'simulated rate limit', retryAfterMs };
  }
  if (prompt.includes(TRANSIENT)) return { kind: 'transient', message: 'simulated provider error' };
  return undefined;
}
