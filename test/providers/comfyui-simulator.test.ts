import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import sharp from 'sharp';
import WebSocket from 'ws';
import { createComfyUIProvider } from '../../src/providers/comfyui.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { waitFor } from '../helpers/wait.ts';
import { callWith, WORKFLOW } from './comfyui-fixtures.ts';

const FILLED = JSON.parse(
  JSON.stringify(WORKFLOW).replace('"{{seed}}"', '5').replace('"{{batch_size}}"', '1'),
);

/**
 * The simulator against ComfyUI's own server.py (comfyanonymous/ComfyUI): route shapes, the order of the
 * answer and the websocket events, binary preview frames, validation errors as execution.py words them.
 */
describe('comfyui simulator', () => {
  let sim: FakeProviderHandle;
  let base: string;
  const post = (path: string, body: unknown) =>
    fetch(`${base}${path}`, { method: 'POST', body: JSON.stringify(body) });

  before(async () => {
    sim = await startFakeProvider({
      providers: [
        {
          name: 'comfy',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 60,
          jitterMs: 0,
          errorRate: 0,
        },
        // Its prompts run for a minute: they end only when interrupted.
        {
          name: 'held',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 60_000,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
    base = `${sim.url}/p/comfy`;
  });
  after(() => sim.close());
  beforeEach(() => sim.restart());

  /** Opens `/ws?clientId=` and records every frame in arrival order. */
  async function socket(clientId: string): Promise<{ frames: Array<string | Buffer>; ws: WebSocket }> {
    const ws = new WebSocket(`${base.replace('http', 'ws')}/ws?clientId=${clientId}`);
    const frames: Array<string | Buffer> = [];
    ws.on('message', (data: Buffer, isBinary) => frames.push(isBinary ? data : data.toString()));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    return { frames, ws };
  }
  const events = (frames: Array<string | Buffer>) =>
    frames
      .filter((frame): frame is string => typeof frame === 'string')
      .map((frame) => JSON.parse(frame) as { type: string; data: Record<string, unknown> });

  it('answers POST /prompt before it sends any execution event, then previews as binary frames', async () => {
    const { frames, ws } = await socket('order-client');
    const promptId = randomUUID();
    // node:http reports the response from the socket's own callback, with no queueing of its own.
    const { body, framesBeforeAnswer } = await new Promise<{
      body: Promise<string>;
      framesBeforeAnswer: unknown[];
    }>((resolve, reject) => {
      const request = httpRequest(`${base}/prompt`, { method: 'POST' }, (response) => {
        const before = events(frames).filter((e) => e.data.prompt_id === promptId);
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        const body = new Promise<string>((done) =>
          response.on('end', () => done(Buffer.concat(chunks).toString())),
        );
        resolve({ body, framesBeforeAnswer: before });
      });
      request.on('error', reject);
      request.end(JSON.stringify({ prompt: FILLED, client_id: 'order-client', prompt_id: promptId }));
    });
    assert.deepEqual(JSON.parse(await body), { prompt_id: promptId, number: 0, node_errors: {} });
    assert.deepEqual(framesBeforeAnswer, [], 'no event of the prompt preceded the answer');
    await waitFor('the prompt to finish', () =>
      events(frames).some((e) => e.type === 'executing' && e.data.node === null),
    );
    ws.close();
    const types = events(frames)
      .filter((e) => e.data.prompt_id === promptId)
      .map((e) => e.type);
    assert.equal(types[0], 'execution_start');
    assert.equal(types[1], 'execution_cached');
    assert.deepEqual(types.slice(-2), ['execution_success', 'executing']);
    const previews = frames.filter((frame): frame is Buffer => Buffer.isBuffer(frame));
    assert.equal(previews.length, 4, 'one preview per sampler step');
    for (const frame of previews) {
      assert.equal(frame.readUInt32BE(0), 1, 'BinaryEventTypes.PREVIEW_IMAGE');
      assert.equal(frame.readUInt32BE(4), 1, 'image format 1 = JPEG');
      assert.equal((await sharp(frame.subarray(8)).metadata()).format, 'jpeg');
    }
  });

  it('rejects workflows with the errors execution.py validate_prompt returns', async () => {
    const cases: Array<[object, string, string | undefined]> = [
      [{ '1': { inputs: {} } }, 'missing_node_type', undefined],
      [{ ...FILLED, '12': { class_type: 'NoSuchNode', inputs: {} } }, 'missing_node_type', undefined],
      [{ '3': FILLED['3'] }, 'prompt_no_outputs', undefined],
      [
        { ...FILLED, '3': { ...FILLED['3'], inputs: { ...FILLED['3'].inputs, sampler_name: 'warp' } } },
        'prompt_outputs_failed_validation',
        'value_not_in_list',
      ],
      [
        { ...FILLED, '5': { class_type: 'EmptyLatentImage', inputs: { width: 48, batch_size: 1 } } },
        'prompt_outputs_failed_validation',
        'required_input_missing',
      ],
    ];
    for (const [prompt, type, nodeErrorType] of cases) {
      const answer = await post('/prompt', { prompt });
      assert.equal(answer.status, 400);
      const body = (await answer.json()) as {
        error: { type: string; message: string; details: string };
        node_errors: Record<
          string,
          { errors: Array<{ type: string }>; class_type: string; dependent_outputs: string[] }
        >;
      };
      assert.equal(body.error.type, type);
      if (nodeErrorType) {
        const [nodeId, node] = Object.entries(body.node_errors)[0]!;
        assert.equal(node.errors[0]?.type, nodeErrorType);
        assert.equal(
          node.class_type,
          FILLED[nodeId as keyof typeof FILLED].class_type,
          'keyed by the node at fault',
        );
        assert.deepEqual(node.dependent_outputs, ['9']);
      }
    }
    const adapter = createComfyUIProvider({ baseUrl: base, workflow: cases[3]![0], timeoutMs: 3000 });
    const outcome = await adapter.call(callWith());
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'invalid_workflow');
    assert.match(outcome.message, /Value not in list: sampler_name: 'warp'/);
  });

  it('serves /object_info and /system_stats in server.py shapes', async () => {
    const info = (await (await fetch(`${base}/object_info`)).json()) as Record<
      string,
      Record<string, unknown>
    >;
    const ksampler = info.KSampler!;
    assert.deepEqual(ksampler.output, ['LATENT']);
    assert.equal(ksampler.output_node, false);
    assert.equal(info.SaveImage?.output_node, true);
    const required = (ksampler.input as { required: Record<string, unknown[]> }).required;
    assert.ok((required.sampler_name?.[0] as string[]).includes('euler'));
    const one = (await (await fetch(`${base}/api/object_info/VAEDecode`)).json()) as object;
    assert.deepEqual(Object.keys(one), ['VAEDecode']);
    assert.deepEqual(await (await fetch(`${base}/object_info/Nope`)).json(), {});
    const stats = (await (await fetch(`${base}/system_stats`)).json()) as {
      system: Record<string, unknown>;
      devices: Array<Record<string, unknown>>;
    };
    assert.equal(typeof stats.system.comfyui_version, 'string');
    assert.equal(typeof stats.devices[0]?.vram_free, 'number');
  });

  it('manages the queue and history as POST /queue, /interrupt and /history do', async () => {
    const held = `${sim.url}/p/held`;
    const send = (path: string, body: unknown) =>
      fetch(`${held}${path}`, { method: 'POST', body: JSON.stringify(body) });
    const queue = async () => {
      const q = (await (await fetch(`${held}/queue`)).json()) as Record<string, unknown[][]>;
      return [q.queue_running?.map((row) => row[1]), q.queue_pending?.map((row) => row[1])];
    };
    const history = async () =>
      (await (await fetch(`${held}/history`)).json()) as Record<string, { status: { status_str: string } }>;
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (const id of ids)
      assert.equal((await send('/prompt', { prompt: FILLED, prompt_id: id })).status, 200);
    await waitFor('the first prompt to start', async () => (await queue())[0]?.length === 1);
    assert.deepEqual(await queue(), [[ids[0]], [ids[1], ids[2]]]);
    assert.equal((await send('/queue', { delete: [ids[2]] })).status, 200);
    assert.deepEqual(await queue(), [[ids[0]], [ids[1]]]);
    assert.equal(
      (await send('/interrupt', { prompt_id: ids[1] })).status,
      200,
      'not running: nothing happens',
    );
    assert.equal((await send('/interrupt', {})).status, 200, 'no prompt_id: whatever runs');
    await waitFor('the second prompt to start', async () => (await queue())[0]?.[0] === ids[1]);
    assert.equal((await send('/interrupt', { prompt_id: ids[1] })).status, 200);
    await waitFor('both prompts to end', async () => Object.keys(await history()).length === 2);
    const all = await history();
    assert.equal(all[ids[0]!]?.status.status_str, 'error', 'interrupted');
    assert.equal(all[ids[1]!]?.status.status_str, 'error', 'interrupted');
    assert.equal(all[ids[2]!], undefined, 'the deleted one never ran');
    const newest = (await (await fetch(`${held}/history?max_items=1`)).json()) as object;
    assert.deepEqual(Object.keys(newest), [ids[1]]);
    assert.equal((await send('/history', { delete: [ids[0]] })).status, 200);
    assert.deepEqual(Object.keys(await history()), [ids[1]]);
    assert.equal((await send('/history', { clear: true })).status, 200);
    assert.deepEqual(await history(), {});
    assert.deepEqual(sim.stats().providers.held?.comfyui, {
      interrupts: [
        { prompt_id: ids[1], interrupted: [] },
        { prompt_id: null, interrupted: [ids[0]] },
        { prompt_id: ids[1], interrupted: [ids[1]] },
      ],
      deleted: [ids[2]],
      views: 0,
      running: 0,
      pending: 0,
    });
  });
});
