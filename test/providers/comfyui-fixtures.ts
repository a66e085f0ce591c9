/** Workflows, calls and an HTTP proxy the ComfyUI tests share. */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FakeProviderHandle, Fault } from '../../src/providers/fake-server/index.ts';
import type { ProviderCall, ProviderKey } from '../../src/providers/types.ts';

export const SECRET = 'comfy-proxy-token-5be1d0';
export const KEY: ProviderKey = { id: 'gpu', secret: SECRET };

/** A txt2img workflow in ComfyUI's API format, with darkroom placeholders. */
export const WORKFLOW = {
  '3': {
    class_type: 'KSampler',
    inputs: {
      seed: '{{seed}}',
      steps: 4,
      cfg: 7,
      sampler_name: 'euler',
      scheduler: 'normal',
      denoise: 0.8,
      model: ['4', 0],
      positive: ['6', 0],
      negative: ['7', 0],
      latent_image: ['5', 0],
    },
  },
  '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd_xl_base_1.0.safetensors' } },
  '5': { class_type: 'EmptyLatentImage', inputs: { width: 48, height: 32, batch_size: '{{batch_size}}' } },
  '6': { class_type: 'CLIPTextEncode', inputs: { text: 'masterpiece, {{prompt}}', clip: ['4', 1] } },
  '7': { class_type: 'CLIPTextEncode', inputs: { text: 'blurry', clip: ['4', 1] } },
  '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
  '9': { class_type: 'SaveImage', inputs: { filename_prefix: 'darkroom', images: ['8', 0] } },
};

/** img2img: the uploaded photo is encoded and sampled over, so the output has the photo's size. */
export const IMG2IMG = {
  ...WORKFLOW,
  '3': { ...WORKFLOW['3'], inputs: { ...WORKFLOW['3'].inputs, latent_image: ['11', 0] } },
  '10': { class_type: 'LoadImage', inputs: { image: '{{input_person}}' } },
  '11': { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } },
};
delete (IMG2IMG as Record<string, unknown>)['5'];

/**
 * Base + refiner: two samplers that each count their own steps from 1 (3 then 2), with a latent upscale
 * between them. Execution order (dependencies first): 4 6 7 5 3 10 11 8 9.
 */
export const TWO_SAMPLERS = {
  ...WORKFLOW,
  '3': { ...WORKFLOW['3'], inputs: { ...WORKFLOW['3'].inputs, steps: 3 } },
  '10': {
    class_type: 'LatentUpscaleBy',
    inputs: { samples: ['3', 0], upscale_method: 'nearest-exact', scale_by: 1.5 },
  },
  '11': {
    class_type: 'KSampler',
    inputs: { ...WORKFLOW['3'].inputs, steps: 2, denoise: 0.3, latent_image: ['10', 0] },
  },
  '8': { class_type: 'VAEDecode', inputs: { samples: ['11', 0], vae: ['4', 2] } },
};

export function callWith(overrides: Partial<ProviderCall> = {}): ProviderCall {
  return {
    taskId: 'task-1',
    jobId: `job-${Math.random().toString(36).slice(2)}`,
    step: 'generate',
    prompt: 'a castle at dusk',
    inputs: [],
    count: 1,
    seed: 7,
    firstIndex: 0,
    params: {},
    key: KEY,
    signal: new AbortController().signal,
    ...overrides,
  };
}

export async function scriptFaults(sim: FakeProviderHandle, provider: string, list: Fault[]): Promise<void> {
  const response = await fetch(`${sim.url}/_sim/faults`, {
    method: 'POST',
    body: JSON.stringify({ provider, faults: list }),
  });
  assert.equal(response.status, 200);
}

export async function historyOf(
  sim: FakeProviderHandle,
  provider: string,
  promptId: string,
): Promise<Record<string, unknown> | undefined> {
  const all = (await (await fetch(`${sim.url}/p/${provider}/history/${promptId}`)).json()) as Record<
    string,
    Record<string, unknown>
  >;
  return all[promptId];
}

/** What a proxy does with a websocket upgrade. */
export type UpgradePolicy =
  | 'forbid' // answers 403, as a proxy or WAF that does not allow websockets
  | 'reset' // drops the connection
  | 'strip'; // forwards it as a plain GET (hop-by-hop Upgrade headers removed), so /ws answers 4xx

/** A plain HTTP reverse proxy in front of `target` that passes every request but no websocket. */
export async function startProxy(
  target: string,
  policy: UpgradePolicy,
): Promise<{ url: string; upgrades: () => number; close(): Promise<void> }> {
  let upgrades = 0;
  const upstreamRequest = (req: IncomingMessage, onAnswer: (answer: IncomingMessage) => void) => {
    const url = new URL(req.url ?? '/', target);
    const headers = { ...req.headers, host: url.host };
    delete headers.upgrade;
    delete headers.connection;
    const upstream = httpRequest(url, { method: req.method, headers }, onAnswer);
    req.pipe(upstream);
    return upstream;
  };
  const server = createServer((req, res) => {
    upstreamRequest(req, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    }).on('error', () => res.destroy());
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    upgrades += 1;
    if (policy === 'reset') {
      socket.destroy();
      return;
    }
    if (policy === 'forbid') {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 9\r\nconnection: close\r\n\r\nForbidden');
      return;
    }
    upstreamRequest(req, (answer) => {
      const head = [`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}`];
      for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2)
        if (answer.rawHeaders[i]?.toLowerCase() !== 'connection')
          head.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`);
      socket.write(`${head.join('\r\n')}\r\nconnection: close\r\n\r\n`);
      answer.pipe(socket);
    }).on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    upgrades: () => upgrades,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
