import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Everything the server sent, as text. */
  text: string;
}

/**
 * Writes `request` (bytes exactly as given: malformed on purpose) to a fresh TCP connection and
 * reads until the server closes it or, once a full response with Content-Length has arrived.
 * Rejects when nothing complete arrives within `guardMs` (a hang, not a timing check).
 */
export function rawRequest(
  baseUrl: string,
  request: string | Buffer,
  guardMs = 30_000,
): Promise<RawResponse> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.write(request));
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      socket.destroy();
      if (error) return reject(error);
      try {
        resolve(parseResponse(Buffer.concat(chunks).toString('latin1')));
      } catch (parseError) {
        reject(parseError as Error);
      }
    };
    const guard = setTimeout(
      () =>
        finish(
          new Error(
            `no complete answer within ${guardMs} ms to ${JSON.stringify(String(request).slice(0, 80))}`,
          ),
        ),
      guardMs,
    );
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (isComplete(Buffer.concat(chunks).toString('latin1'))) finish();
    });
    socket.on('end', () => finish());
    socket.on('close', () => finish());
    socket.on('error', (error) => (chunks.length > 0 ? finish() : finish(error)));
  });
}

function isComplete(text: string): boolean {
  const head = text.indexOf('\r\n\r\n');
  if (head < 0) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, head));
  return length !== null && Buffer.byteLength(text.slice(head + 4), 'latin1') >= Number(length[1]);
}

export function parseResponse(text: string): RawResponse {
  const head = text.indexOf('\r\n\r\n');
  if (head < 0) throw new Error(`not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, head).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status, headers, body: Buffer.from(text.slice(head + 4), 'latin1').toString('utf8'), text };
}
