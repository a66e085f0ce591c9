import { AppError } from '../errors.ts';
import { fetchInputUrl } from './fetch-url.ts';

export interface ResultDownloadOptions {
  /** The provider's configured endpoint: result URLs on its own origin are as trusted as it is. */
  trustedOrigin: string;
  timeoutMs: number;
  /** Default 64 MiB. */
  maxBytes?: number;
  /** The call's deadline or cancellation. */
  signal?: AbortSignal;
}

export type ResultDownload =
  | { ok: true; data: Buffer }
  /** `forbidden`: the URL points somewhere darkroom must not connect to (SSRF guard). */
  | { ok: false; forbidden: boolean; message: string };

const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Downloads an image a provider answered with a URL to, through the same SSRF guard as URL
 * inputs: a relay (or anything between darkroom and it) answering `http://169.254.169.254/…` or an
 * internal address must not make darkroom fetch it. The provider's own origin stays reachable,
 * so a relay or simulator on a private address can serve its results.
 */
export async function downloadResultUrl(
  url: string,
  options: ResultDownloadOptions,
): Promise<ResultDownload> {
  const trustedHost = sameOriginHost(url, options.trustedOrigin);
  const download = fetchInputUrl(url, {
    maxBytes: options.maxBytes ?? DEFAULT_MAX_BYTES,
    timeoutMs: options.timeoutMs,
    maxRedirects: 3,
    ...(trustedHost ? { allowHosts: [trustedHost] } : {}),
  });
  try {
    const fetched = await (options.signal ? raceAbort(download, options.signal) : download);
    return { ok: true, data: fetched.data };
  } catch (error) {
    if (error instanceof AppError)
      return { ok: false, forbidden: error.code === 'input_url_forbidden', message: error.message };
    throw error;
  }
}

/** The trusted origin's host when `url` is on that very origin (scheme, host and port). */
function sameOriginHost(url: string, trustedOrigin: string): string | undefined {
  try {
    const trusted = new URL(trustedOrigin);
    if (new URL(url).origin !== trusted.origin) return undefined;
    return trusted.hostname.replace(/^\[(.*)\]$/, '$1');
  } catch {
    return undefined;
  }
}

function raceAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
