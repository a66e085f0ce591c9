import type { IncomingMessage, ServerResponse } from 'node:http';

export type Headers = Record<string, string | number>;

export interface Reply {
  status: number;
  headers?: Headers;
  body: Buffer | string;
  contentType?: string;
}

export function json(status: number, value: unknown, headers: Headers = {}): Reply {
  return { status, headers, body: JSON.stringify(value), contentType: 'application/json; charset=utf-8' };
}

export function text(status: number, value: string, headers: Headers = {}): Reply {
  return { status, headers, body: value, contentType: 'text/plain; charset=utf-8' };
}

export function readBody(req: IncomingMessage, limitBytes = 64 * 1024 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** Parses multipart/form-data with the platform's own parser (undici inside Node). */
export async function parseMultipart(req: IncomingMessage, body: Buffer): Promise<FormData | undefined> {
  const contentType = req.headers['content-type'];
  if (!contentType?.startsWith('multipart/form-data')) return undefined;
  try {
    return await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch {
    return undefined;
  }
}

export function send(res: ServerResponse, reply: Reply): void {
  if (res.destroyed || res.writableEnded) return;
  const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  res.writeHead(reply.status, {
    ...(reply.contentType ? { 'content-type': reply.contentType } : {}),
    'content-length': body.length,
    ...reply.headers,
  });
  res.end(body);
}

/** Sends the reply in 20 slices spread over `durationMs`; stops when the client goes away. */
export function sendTrickle(res: ServerResponse, reply: Reply, durationMs: number): void {
  if (res.destroyed) return;
  const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  res.writeHead(reply.status, {
    ...(reply.contentType ? { 'content-type': reply.contentType } : {}),
    'content-length': body.length,
    ...reply.headers,
  });
  const slices = 20;
  const sliceSize = Math.ceil(body.length / slices);
  let offset = 0;
  const timer = setInterval(() => {
    if (res.destroyed) {
      clearInterval(timer);
      return;
    }
    const slice = body.subarray(offset, offset + sliceSize);
    offset += sliceSize;
    if (offset >= body.length) {
      clearInterval(timer);
      res.end(slice);
    } else {
      res.write(slice);
    }
  }, durationMs / slices);
  res.on('close', () => clearInterval(timer));
}

/** Promises the whole reply in its headers, sends the first half of the body, then closes the connection. */
export function sendTruncated(res: ServerResponse, reply: Reply): void {
  if (res.destroyed) return;
  const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  res.writeHead(reply.status, {
    ...(reply.contentType ? { 'content-type': reply.contentType } : {}),
    'content-length': body.length,
    ...reply.headers,
  });
  res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
}

/**
 * Resolves after `ms`, or early when the client disconnects (returns false then). `sleep` replaces the
 * timer (tests hold it); its wait is not canceled by a disconnect, only no longer waited for.
 */
export function delay(
  res: ServerResponse,
  ms: number,
  sleep?: (ms: number) => Promise<void>,
): Promise<boolean> {
  if (ms <= 0) return Promise.resolve(!res.destroyed);
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (): void => {
      res.off('close', onClose);
      resolve(!res.destroyed);
    };
    const onClose = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    res.once('close', onClose);
    if (sleep) sleep(ms).then(done, done);
    else timer = setTimeout(done, ms);
  });
}

/** Never answers; resolves when the client gives up. */
export function hangUntilClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) resolve();
    else res.once('close', () => resolve());
  });
}
