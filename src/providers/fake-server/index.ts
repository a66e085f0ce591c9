import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { ComfyFake } from './comfyui.ts';
import { isFault } from './faults.ts';
import { handleGemini, matchGeminiPath } from './gemini.ts';
import { json, parseJson, readBody, send, text } from './http.ts';
import { handleFile, handleOpenAIEdits, handleOpenAIGenerations } from './openai.ts';
import { SimProvider, type SimContext } from './sim-provider.ts';
import type { FakeProviderHandle, FakeProviderOptions, FakeStats } from './types.ts';

export type {
  FakeKeyOptions,
  FakeKeyStats,
  FakeProviderConfig,
  FakeProviderHandle,
  FakeProviderOptions,
  FakeStats,
  Fault,
} from './types.ts';
export { FAULTS } from './types.ts';

const PROVIDER_PATH = /^\/p\/([^/]+)(\/.*)?$/;

/**
 * Starts the provider simulator: every configured provider lives under `/p/<name>` and speaks Gemini,
 * OpenAI images and ComfyUI at once; `/_sim/*` exposes stats, scripted faults and reset.
 */
export async function startFakeProvider(
  options: FakeProviderOptions & { port?: number; host?: string },
): Promise<FakeProviderHandle> {
  const ctx: SimContext = {
    now: options.now ?? Date.now,
    sleep: options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
    trickleMs: options.trickleMs ?? 2000,
    fileTtlMs: options.fileTtlMs ?? 10 * 60_000,
    imageSize: options.imageSize ?? 256,
    files: new Map(),
  };
  const providers = new Map<string, { sim: SimProvider; comfy: ComfyFake }>();
  for (const config of options.providers) {
    if (providers.has(config.name)) throw new Error(`duplicate simulated provider name: ${config.name}`);
    const sim = new SimProvider(config);
    providers.set(config.name, { sim, comfy: new ComfyFake(ctx, sim) });
  }

  const stats = (): FakeStats => ({
    providers: Object.fromEntries(
      [...providers].map(([name, { sim, comfy }]) => [name, { ...sim.stats(), comfyui: comfy.stats() }]),
    ),
  });

  const handleSim = async (req: IncomingMessage, res: ServerResponse, path: string): Promise<void> => {
    if (req.method === 'GET' && path === '/_sim/stats') {
      send(res, json(200, stats()));
      return;
    }
    if (req.method === 'POST' && path === '/_sim/reset') {
      for (const { sim } of providers.values()) sim.reset();
      ctx.files.clear();
      send(res, json(200, { ok: true }));
      return;
    }
    if (req.method === 'POST' && path === '/_sim/faults') {
      const body = parseJson(await readBody(req)) as
        { provider?: unknown; key?: unknown; faults?: unknown } | undefined;
      const target = typeof body?.provider === 'string' ? providers.get(body.provider) : undefined;
      const faults = body?.faults;
      if (
        !target ||
        !Array.isArray(faults) ||
        !faults.every(isFault) ||
        (body?.key !== undefined && typeof body.key !== 'string')
      ) {
        send(
          res,
          json(400, {
            error: 'expected { provider: <configured name>, key?: <key id>, faults: [<fault>...] }',
          }),
        );
        return;
      }
      target.sim.faults.add(faults, body?.key as string | undefined);
      send(res, json(200, { queued: target.sim.faults.size }));
      return;
    }
    send(res, json(404, { error: 'not found' }));
  };

  const handleProvider = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    name: string,
    path: string,
  ): Promise<void> => {
    const target = providers.get(name);
    if (!target) {
      send(res, json(404, { error: `no simulated provider named ${name}` }));
      return;
    }
    const { sim, comfy } = target;
    const model = matchGeminiPath(path);
    if (req.method === 'POST' && model !== undefined) return handleGemini(ctx, sim, req, res, url, model);
    if (req.method === 'POST' && path === '/v1/images/generations')
      return handleOpenAIGenerations(ctx, sim, req, res);
    if (req.method === 'POST' && path === '/v1/images/edits') return handleOpenAIEdits(ctx, sim, req, res);
    if (req.method === 'GET' && path.startsWith('/files/'))
      return handleFile(ctx, sim, res, path.slice('/files/'.length));
    if (await comfy.handle(req, res, path, url)) return;
    send(res, text(404, 'Not Found'));
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const match = PROVIDER_PATH.exec(url.pathname);
    const work = url.pathname.startsWith('/_sim/')
      ? handleSim(req, res, url.pathname)
      : match?.[1] !== undefined
        ? handleProvider(req, res, url, decodeURIComponent(match[1]), match[2] ?? '/')
        : Promise.resolve(send(res, text(404, 'Not Found')));
    work.catch((error: unknown) => {
      if (!res.headersSent)
        send(res, text(500, `simulator error: ${error instanceof Error ? error.message : String(error)}`));
      else res.destroy();
    });
  });

  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://fake.invalid');
    const match = PROVIDER_PATH.exec(url.pathname);
    const target = match?.[1] !== undefined ? providers.get(decodeURIComponent(match[1])) : undefined;
    if (!target || !target.comfy.isWebSocketPath(match?.[2] ?? '')) {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) =>
      target.comfy.attachSocket(ws, url.searchParams.get('clientId')),
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    stats,
    restart(provider) {
      for (const [name, { comfy }] of providers)
        if (provider === undefined || provider === name) comfy.restart();
    },
    async close() {
      for (const { comfy } of providers.values()) comfy.close();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
