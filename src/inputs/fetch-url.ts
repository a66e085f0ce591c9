import { isIP } from 'node:net';
import { Agent, buildConnector, errors as undiciErrors, request } from 'undici';
import type { Dispatcher } from 'undici';
import { AppError, coerceError } from '../errors.ts';
import { createAddressPolicy } from './address-policy.ts';
import type { AddressPolicy } from './address-policy.ts';
import { createGuardedConnector, resolveAllowedAddress, systemLookup } from './guarded-connector.ts';
import type { HostLookup } from './guarded-connector.ts';

export interface FetchInputUrlOptions {
  /** Larger bodies are refused; the download is aborted as soon as it passes this. */
  maxBytes: number;
  /** For the whole fetch, redirects included. */
  timeoutMs: number;
  /** Default 3. */
  maxRedirects?: number;
  /** Allow loopback, RFC 1918, CGNAT and IPv6 unique-local targets (never link-local or multicast). */
  allowPrivate?: boolean;
  /** Host names, IP addresses or CIDR ranges that skip the address checks entirely. */
  allowHosts?: readonly string[];
  /** DNS resolution; tests inject one so no query leaves the machine. */
  lookup?: HostLookup;
}

export interface FetchedInput {
  data: Buffer;
  contentType: string | undefined;
  /** The URL the bytes came from, after redirects, without any credentials it had. */
  finalUrl: string;
}

const DEFAULT_MAX_REDIRECTS = 3;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Downloads an input image named by a caller-supplied URL without letting that URL reach
 * darkroom's own network: every connection (redirects included) goes to an address that was
 * checked after DNS resolution. Errors are AppError `input_url_forbidden` (blocked target),
 * `invalid_input` (not a URL) or `input_fetch_failed` (network, HTTP status, size, time).
 */
export async function fetchInputUrl(url: string, options: FetchInputUrlOptions): Promise<FetchedInput> {
  const initialUrl = parseInputUrl(url);
  const policy = createAddressPolicy(options);
  const controller = new AbortController();
  const lookup = abortableLookup(options.lookup ?? systemLookup, controller.signal);
  const agent = new Agent({
    connect: createGuardedConnector(policy, lookup, buildConnector({ timeout: options.timeoutMs })),
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  });
  const progress: Progress = { currentUrl: initialUrl };
  let timer: NodeJS.Timeout | undefined;
  // undici settles an aborted request only once its connection attempt ends, so the deadline is
  // enforced here too: the caller gets its answer on time whatever the socket is doing.
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(fetchFailed(`${redact(progress.currentUrl)} did not answer within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
  });
  try {
    const download = followRedirects(initialUrl, progress, {
      ...options,
      policy,
      lookup,
      agent,
      signal: controller.signal,
    });
    return await Promise.race([download, deadline]);
  } catch (error) {
    throw asAppError(error, progress.currentUrl);
  } finally {
    clearTimeout(timer);
    agent.destroy().catch(() => undefined);
  }
}

interface Progress {
  currentUrl: URL;
}

interface DownloadContext extends FetchInputUrlOptions {
  policy: AddressPolicy;
  lookup: HostLookup;
  agent: Agent;
  signal: AbortSignal;
}

async function followRedirects(
  initialUrl: URL,
  progress: Progress,
  context: DownloadContext,
): Promise<FetchedInput> {
  const maxRedirects = context.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  for (let redirects = 0; ; redirects++) {
    const currentUrl = progress.currentUrl;
    await assertFetchableUrl(currentUrl, context.policy, context.lookup);
    const response = await request(withoutCredentials(currentUrl), {
      method: 'GET',
      dispatcher: context.agent,
      signal: context.signal,
      headers: requestHeaders(initialUrl, currentUrl),
    });
    if (REDIRECT_STATUSES.has(response.statusCode)) {
      discard(response.body);
      if (redirects >= maxRedirects) {
        throw fetchFailed(`${redact(initialUrl)} redirected more than ${maxRedirects} times`);
      }
      progress.currentUrl = redirectTarget(currentUrl, headerValue(response.headers, 'location'));
      continue;
    }
    if (response.statusCode < 200 || response.statusCode > 299) {
      discard(response.body);
      throw fetchFailed(`${redact(currentUrl)} answered HTTP ${response.statusCode}`);
    }
    const declaredLength = Number(headerValue(response.headers, 'content-length'));
    if (Number.isFinite(declaredLength) && declaredLength > context.maxBytes) {
      discard(response.body);
      throw tooLarge(currentUrl, context.maxBytes);
    }
    const data = await readAtMost(response.body, context.maxBytes, currentUrl);
    return {
      data,
      contentType: headerValue(response.headers, 'content-type'),
      finalUrl: withoutCredentials(currentUrl),
    };
  }
}

/** A lookup that gives up when the fetch's deadline passes, so a silent resolver cannot pin a socket slot. */
function abortableLookup(lookup: HostLookup, signal: AbortSignal): HostLookup {
  return (hostname) =>
    new Promise((resolve, reject) => {
      const onAbort = (): void => reject(fetchFailed(`resolving ${hostname} took too long`));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      lookup(hostname)
        .then(resolve, reject)
        .finally(() => signal.removeEventListener('abort', onAbort));
    });
}

function parseInputUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new AppError('invalid_input', 'The input URL is not a valid absolute URL');
  }
  return parsed;
}

/** Fails fast on a bad scheme or a forbidden IP literal; host names are checked again at connect time. */
async function assertFetchableUrl(url: URL, policy: AddressPolicy, lookup: HostLookup): Promise<void> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AppError(
      'input_url_forbidden',
      `Refusing to fetch the input URL: only http and https are allowed, not ${url.protocol.replace(/:$/, '')}`,
    );
  }
  if (isIP(url.hostname.replace(/^\[(.*)\]$/, '$1')) !== 0) {
    await resolveAllowedAddress(url.hostname, policy, lookup);
  }
}

function redirectTarget(from: URL, location: string | undefined): URL {
  if (location === undefined) throw fetchFailed(`${redact(from)} redirected without a Location header`);
  try {
    return new URL(location, from);
  } catch {
    throw fetchFailed(`${redact(from)} redirected to an invalid URL`);
  }
}

/** Credentials written in the URL go as Basic auth, and only to the origin they were written for. */
function requestHeaders(initialUrl: URL, currentUrl: URL): Record<string, string> {
  const headers: Record<string, string> = { accept: 'image/*, */*;q=0.8', 'user-agent': 'darkroom' };
  if ((initialUrl.username !== '' || initialUrl.password !== '') && currentUrl.origin === initialUrl.origin) {
    const user = decodePercent(initialUrl.username);
    const password = decodePercent(initialUrl.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }
  return headers;
}

function decodePercent(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

function withoutCredentials(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href;
}

/** The URL as it may appear in a message: no credentials, no query (it often carries a token). */
function redact(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

async function readAtMost(
  body: Dispatcher.ResponseData['body'],
  maxBytes: number,
  url: URL,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    total += buffer.length;
    if (total > maxBytes) {
      discard(body);
      throw tooLarge(url, maxBytes);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks, total);
}

/** The body is not wanted; destroying it must not surface as an unhandled stream error. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined);
  body.destroy();
}

function headerValue(headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function tooLarge(url: URL, maxBytes: number): AppError {
  return fetchFailed(`${redact(url)} is larger than the ${maxBytes}-byte limit for inputs`);
}

function fetchFailed(message: string, cause?: unknown): AppError {
  return new AppError('input_fetch_failed', `Could not fetch the input URL: ${message}`, { cause });
}

function asAppError(error: unknown, url: URL): AppError {
  if (error instanceof AppError) return error;
  const cause = coerceError(error);
  if (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError
  ) {
    return fetchFailed(`${redact(url)} timed out`, error);
  }
  const code = typeof cause.code === 'string' ? ` (${cause.code})` : '';
  return fetchFailed(`${redact(url)} failed${code}: ${cause.message}`, error);
}
