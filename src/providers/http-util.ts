/**
 * Helpers the HTTP adapters share: deadlines, retry-hint parsing, classification of thrown errors,
 * image checks and secret redaction.
 */
import sharp from 'sharp';
import { sniffImageFormat } from '../images/sniff.ts';
import type { ProviderAdapter, ProviderCall, ProviderImage, ProviderKey, ProviderOutcome } from './types.ts';

/** What the adapter sends as the credential: the secret, or the key id for the simulator and keyless backends. */
export function credentialOf(key: ProviderKey): string {
  return key.secret ?? key.id;
}

export function redact(text: string, secrets: ReadonlyArray<string | undefined>): string {
  let result = text;
  for (const secret of secrets) {
    if (!secret || secret.length < 4) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)]))
      result = result.split(form).join('[redacted]');
  }
  return result;
}

function redactOutcome(
  outcome: ProviderOutcome,
  secrets: ReadonlyArray<string | undefined>,
): ProviderOutcome {
  if (outcome.kind === 'success') return outcome;
  return { ...outcome, message: redact(outcome.message, secrets) };
}

/**
 * Wraps an adapter's call so it never throws and its messages never carry the key's secret,
 * whatever a provider echoes back or a library puts in an error.
 */
export function guardAdapter(
  type: string,
  call: (call: ProviderCall) => Promise<ProviderOutcome>,
): ProviderAdapter['call'] {
  return async (providerCall) => {
    const secrets = [providerCall.key.secret];
    try {
      return redactOutcome(await call(providerCall), secrets);
    } catch (error) {
      return {
        kind: 'transient',
        message: redact(`${type}: unexpected error: ${describeError(error)}`, secrets),
      };
    }
  };
}

/**
 * Durations as providers print them: Go's `time.Duration` (`1s`, `6m0s`, `1h2m3.5s`, `250ms`) used by
 * OpenAI's x-ratelimit-reset-* headers, and protobuf JSON durations (`7s`, `0.5s`) used by Google's RetryInfo.
 */
export function parseDurationMs(text: string | null | undefined): number | undefined {
  if (!text) return undefined;
  const trimmed = text.trim();
  if (!/^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/.test(trimmed)) return undefined;
  const scale: Record<string, number> = {
    h: 3_600_000,
    m: 60_000,
    s: 1000,
    ms: 1,
    us: 0.001,
    µs: 0.001,
    ns: 0.000001,
  };
  let total = 0;
  for (const match of trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)/g)) {
    total += Number(match[1]) * (scale[match[2] ?? 's'] ?? 0);
  }
  return Math.ceil(total);
}

/** HTTP Retry-After: delta-seconds (decimals tolerated) or an HTTP date. */
export function parseRetryAfterMs(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.ceil(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * One call's time budget: aborts on the adapter's own timeout or on the caller's signal, and remembers
 * which one fired so the outcome says `timeout` only for the former.
 */
export class Deadline {
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly callerSignal: AbortSignal;
  private readonly onCallerAbort: () => void;
  private expired = false;

  constructor(callerSignal: AbortSignal, timeoutMs: number) {
    this.signal = this.controller.signal;
    this.timeoutMs = timeoutMs;
    this.callerSignal = callerSignal;
    this.timer = setTimeout(() => {
      this.expired = true;
      this.controller.abort(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    this.onCallerAbort = () => this.controller.abort(new Error('aborted by the caller'));
    if (callerSignal.aborted) this.onCallerAbort();
    else callerSignal.addEventListener('abort', this.onCallerAbort, { once: true });
  }

  /** Our own timer fired, or the caller's signal was itself a timeout (`AbortSignal.timeout`). */
  get timedOut(): boolean {
    return this.expired || (this.callerSignal.aborted && isTimeoutReason(this.callerSignal.reason));
  }

  get callerAborted(): boolean {
    return this.callerSignal.aborted && !this.timedOut;
  }

  /** Rejects once the deadline fires; for waits that are not a fetch (websocket events, sleeps). */
  whenAborted(): Promise<never> {
    return new Promise((_, reject) => {
      if (this.signal.aborted) reject(this.signal.reason);
      else this.signal.addEventListener('abort', () => reject(this.signal.reason), { once: true });
    });
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.callerSignal.removeEventListener('abort', this.onCallerAbort);
  }
}

/** `AbortSignal.timeout()` aborts with a DOMException named TimeoutError (WHATWG DOM, AbortSignal.timeout). */
function isTimeoutReason(reason: unknown): boolean {
  return reason instanceof Error && reason.name === 'TimeoutError';
}

/** Sleeps `ms`, rejecting early when the deadline fires. */
export function sleep(ms: number, deadline: Deadline): Promise<void> {
  return new Promise((resolve, reject) => {
    if (deadline.signal.aborted) {
      reject(deadline.signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(deadline.signal.reason);
    };
    const timer = setTimeout(() => {
      deadline.signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    deadline.signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Classifies anything thrown while talking to a provider: our timeout, the caller's abort, or the network. */
export function outcomeForThrown(error: unknown, deadline: Deadline, what: string): ProviderOutcome {
  if (deadline.timedOut)
    return { kind: 'timeout', message: `${what}: no complete answer within ${deadline.timeoutMs} ms` };
  // The caller gave up (task canceled, lease lost, shutdown): not the provider's fault, so worth retrying.
  if (deadline.callerAborted) return { kind: 'transient', message: `${what}: aborted by the caller` };
  return { kind: 'transient', message: `${what}: network error: ${describeError(error)}` };
}

export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  const code = (cause as { code?: unknown } | undefined)?.code ?? (error as { code?: unknown }).code;
  const causeMessage = cause instanceof Error ? cause.message : undefined;
  return [error.message, typeof code === 'string' ? code : undefined, causeMessage]
    .filter(Boolean)
    .join(': ');
}

/** JSON.parse that reports failure instead of throwing. */
export function parseJsonText(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Shortens a provider's text for an outcome message. */
export function snippet(text: string, max = 300): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

const MIME_BY_FORMAT: Record<string, string> = {
  png: 'image/png',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  avif: 'image/avif',
  heif: 'image/heif',
};

/**
 * Decodes the bytes fully (a truncated file fails too) and returns them with their real MIME type,
 * or undefined when they are not an image. SVG is never recognised here: see {@link decodeSvg}.
 */
export async function decodeImage(bytes: Buffer): Promise<ProviderImage | undefined> {
  if (bytes.length === 0 || sniffImageFormat(bytes) === 'svg') return undefined;
  try {
    const metadata = await sharp(bytes).metadata();
    const mime = metadata.format ? MIME_BY_FORMAT[metadata.format] : undefined;
    if (!mime || !metadata.width || !metadata.height) return undefined;
    await sharp(bytes, { failOn: 'truncated' }).resize(8, 8, { fit: 'fill' }).raw().toBuffer();
    return { data: bytes, mime };
  } catch {
    return undefined;
  }
}

export const SVG_MIME = 'image/svg+xml';

// The document element must be <svg> (after an optional XML declaration, comments and a DOCTYPE).
const SVG_ROOT = /^\s*(?:<\?xml[^>]*\?>\s*)?(?:(?:<!--[\s\S]*?-->|<!DOCTYPE[^>[]*>)\s*)*<svg[\s>]/;
// Anything that runs or pulls content when the file is opened in a browser, and DTD entities.
const SVG_ACTIVE =
  /<script[\s>/]|<foreignObject[\s>/]|<!ENTITY|<[^>]*\son[a-z]+\s*=|<[^>]*(?:href|src)\s*=\s*["']?\s*(?:javascript|data:text\/html)/i;

/**
 * An SVG result, which only a request for `output_format: svg` may return: an `<svg>` document that
 * renders, with no script, event handler, foreignObject or entity (darkroom serves results to browsers).
 */
export async function decodeSvg(bytes: Buffer): Promise<ProviderImage | 'unsafe' | undefined> {
  if (sniffImageFormat(bytes) !== 'svg') return undefined;
  const text = bytes.toString('utf8');
  if (!SVG_ROOT.test(text)) return undefined;
  if (SVG_ACTIVE.test(text)) return 'unsafe';
  try {
    const metadata = await sharp(bytes).metadata();
    if (metadata.format !== 'svg' || !metadata.width || !metadata.height) return undefined;
    await sharp(bytes).resize(8, 8, { fit: 'fill' }).raw().toBuffer();
    return { data: bytes, mime: SVG_MIME };
  } catch {
    return undefined;
  }
}

/** Decodes every buffer; the outcome is permanent if any of them is not an image. */
export async function decodeAll(
  buffers: Buffer[],
  what: string,
  options: { allowSvg?: boolean } = {},
): Promise<ProviderOutcome> {
  // Checked at once (sharp works off the main thread); a failure is reported for the first bad result.
  const checked = await Promise.all(
    buffers.map(
      async (bytes) => (await decodeImage(bytes)) ?? (options.allowSvg ? decodeSvg(bytes) : undefined),
    ),
  );
  const images: ProviderImage[] = [];
  for (const [index, image] of checked.entries()) {
    const bytes = buffers[index]!;
    if (image === 'unsafe') {
      return {
        kind: 'permanent',
        reason: 'unsafe_svg',
        message: `${what}: result ${index + 1} is an SVG with active content (script, event handler, foreignObject or entity)`,
      };
    }
    if (!image) {
      return {
        kind: 'permanent',
        reason: 'not_an_image',
        message: `${what}: result ${index + 1} is not a decodable image (${bytes.length} bytes)`,
      };
    }
    images.push(image);
  }
  return { kind: 'success', images };
}

/** Statuses every HTTP API here means as "try again later" rather than "this request is wrong". */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status >= 500;
}
