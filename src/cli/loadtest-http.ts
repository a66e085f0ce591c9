import { setTimeout as delay } from 'node:timers/promises';
import { Agent, fetch } from 'undici';

/** The load test's HTTP client: one connection pool, bearer auth, JSON in and out. */

export interface ApiAnswer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** No HTTP answer at all (refused, reset, timed out): the request may or may not have been processed. */
export class NetworkError extends Error {
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = 'NetworkError';
    this.code = code;
  }
}

export interface ApiOptions {
  /** Connections to the server at most (requests beyond wait in the pool's queue). */
  connections: number;
  /** One request's time limit, headers and body. */
  requestTimeoutMs: number;
}

export class Api {
  private readonly agent: Agent;
  private readonly key: string | undefined;
  private readonly opts: ApiOptions;
  readonly baseUrl: string;

  constructor(baseUrl: string, key: string | undefined, opts: ApiOptions) {
    this.key = key;
    this.opts = opts;
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.agent = new Agent({ connections: opts.connections, pipelining: 1 });
  }

  async request(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<ApiAnswer> {
    const url = path.startsWith('http') ? path : `${this.baseUrl}${path}`;
    try {
      const res = await fetch(url, {
        method,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs),
        headers: {
          ...(this.key ? { authorization: `Bearer ${this.key}` } : {}),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON: keep the text (an error page from a proxy, say)
      }
      return { status: res.status, headers: res.headers as unknown as Headers, body: parsed };
    } catch (error) {
      throw toNetworkError(error);
    }
  }

  /** GETs a file (a result image): status, content type and bytes. */
  async file(url: string): Promise<{ status: number; contentType: string; bytes: Buffer }> {
    try {
      const res = await fetch(url, {
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs),
      });
      const bytes = Buffer.from(await res.arrayBuffer());
      return { status: res.status, contentType: res.headers.get('content-type') ?? '', bytes };
    } catch (error) {
      throw toNetworkError(error);
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function toNetworkError(error: unknown): NetworkError {
  const e = error as Error & { cause?: { code?: string; message?: string }; code?: string };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return new NetworkError('timeout', e.message);
  const code = e.cause?.code ?? e.code ?? 'network';
  return new NetworkError(code, e.cause?.message ?? e.message);
}

/** `{ error: { code } }` of an answer, else undefined. */
export function errorCode(body: unknown): string | undefined {
  const code = (body as { error?: { code?: unknown } } | undefined)?.error?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Runs `fn` over `items` with at most `limit` at once. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

export { delay };
