import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  headers: Record<string, string>;
  body: string;
  path: string;
}

/** What to do with the n-th request (0-based): answer with a status, or never answer. */
export type Answer = (n: number, req: Received) => number | 'hang' | { status: number; body: string };

/** A real HTTP receiver on 127.0.0.1 that records every request it gets. */
export interface Receiver {
  url: string;
  received: Received[];
  close(): Promise<void>;
}

export async function startReceiver(answer: Answer = () => 200): Promise<Receiver> {
  const received: Received[] = [];
  const hanging: ServerResponse[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : (v ?? '')]),
      );
      const r: Received = { headers, body: Buffer.concat(chunks).toString('utf8'), path: req.url ?? '' };
      const n = received.length;
      received.push(r);
      const a = answer(n, r);
      if (a === 'hang') {
        hanging.push(res);
        return;
      }
      const { status, body } =
        typeof a === 'number'
          ? { status: a, body: a === 200 ? '{"errcode":0,"errmsg":"ok","code":0}' : '{"error":"try later"}' }
          : a;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
