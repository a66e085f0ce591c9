import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import sharp from 'sharp';
import { createComfyUIProvider, fillWorkflow } from '../../src/providers/comfyui.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { itClassifiesFaults, noSecretIn, simFaults } from '../helpers/adapter-faults.ts';
import { callWith, IMG2IMG, SECRET, WORKFLOW } from './comfyui-fixtures.ts';

const assertNoSecret = noSecretIn(SECRET);

describe('comfyui workflow placeholders', () => {
  it('keeps numbers numbers when the whole value is a placeholder, and fills text inside strings', () => {
    const filled = fillWorkflow(WORKFLOW, { seed: 42, batch_size: 3, prompt: 'a fox' }) as typeof WORKFLOW;
    assert.equal(filled['3'].inputs.seed, 42);
    assert.equal(filled['5'].inputs.batch_size, 3);
    assert.equal(filled['6'].inputs.text, 'masterpiece, a fox');
    assert.deepEqual(filled['3'].inputs.model, ['4', 0]);
    assert.equal(fillWorkflow('{{unknown}} stays', {}), '{{unknown}} stays');
    assert.equal(WORKFLOW['3'].inputs.seed, '{{seed}}', 'the template is not modified');
  });
});

describe('comfyui adapter against the fake provider', () => {
  let sim: FakeProviderHandle;
  let photo: Buffer;
  const faults = simFaults(() => sim.url, 'comfy');
  const adapter = (options: { timeoutMs?: number; workflow?: object; provider?: string } = {}) =>
    createComfyUIProvider({
      baseUrl: `${sim.url}/p/${options.provider ?? 'comfy'}`,
      workflow: options.workflow ?? WORKFLOW,
      timeoutMs: options.timeoutMs ?? 3000,
      pollIntervalMs: 50,
    });
  const requests = (provider = 'comfy'): number => sim.stats().providers[provider]?.keys.gpu?.requests ?? -1;
  const history = async (promptId: string, provider = 'comfy'): Promise<Record<string, unknown>> =>
    (await (await fetch(`${sim.url}/p/${provider}/history/${promptId}`)).json()) as Record<string, unknown>;

  before(async () => {
    sim = await startFakeProvider({
      trickleMs: 600,
      providers: [
        {
          name: 'comfy',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 2 }],
          latencyMs: 40,
          jitterMs: 5,
          errorRate: 0,
          retryAfterSeconds: 5,
        },
        {
          name: 'one-gpu',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 30,
          jitterMs: 0,
          errorRate: 0,
        },
        {
          name: 'slow',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 300,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
    photo = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
      .png()
      .toBuffer();
  });
  after(() => sim.close());
  beforeEach(async () => {
    await fetch(`${sim.url}/_sim/reset`, { method: 'POST' });
    sim.restart();
  });

  it('uploads inputs, queues the workflow, reports progress and returns the outputs', async () => {
    const progress: number[] = [];
    const refs: string[] = [];
    const outcome = await adapter({ workflow: IMG2IMG }).call(
      callWith({
        inputs: [{ data: photo, mime: 'image/png', role: 'person' }],
        onProgress: (fraction) => progress.push(fraction),
        saveRemoteRef: async (ref) => {
          refs.push(ref);
        },
      }),
    );
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 1);
    const metadata = await sharp(outcome.images[0]!.data).metadata();
    assert.deepEqual([metadata.format, metadata.width, metadata.height], ['png', 16, 16], "the photo's size");
    assert.ok(progress.length > 4, `progress was reported: ${progress.join(' ')}`);
    assert.ok(
      progress.every((value, i) => i === 0 || value > progress[i - 1]!),
      'progress only grows',
    );
    assert.equal(progress.at(-1), 1);
    assert.equal(refs.length, 1);
    const entry = (await history(refs[0] ?? ''))[refs[0] ?? ''] as { status: { status_str: string } };
    assert.equal(entry.status.status_str, 'success');
    assert.equal(requests(), 1);
  });

  it('returns a batch of the size the latent asks for', async () => {
    const outcome = await adapter().call(callWith({ count: 2 }));
    assert.equal(outcome.kind, 'success');
    assert.equal(outcome.images.length, 2);
    for (const image of outcome.images) {
      const metadata = await sharp(image.data).metadata();
      assert.deepEqual([metadata.format, metadata.width, metadata.height], ['png', 48, 32]);
    }
  });

  it('runs no more prompts at once than the GPU slots allow, and ignores rpm', async () => {
    const outcomes = await Promise.all(
      Array.from({ length: 4 }, () => adapter({ provider: 'one-gpu' }).call(callWith())),
    );
    assert.deepEqual(
      outcomes.map((outcome) => outcome.kind),
      ['success', 'success', 'success', 'success'],
    );
    const stats = sim.stats().providers['one-gpu']?.keys.gpu;
    assert.equal(stats?.max_in_flight, 1);
    assert.equal(stats?.rejected_429, 0);
    assert.equal(stats?.max_requests_in_any_60s_window, 4);
  });

  it('is answered when its prompt has finished on the GPU, before it downloads the outputs', async () => {
    const comfy = () => sim.stats().providers['one-gpu']!.comfyui!;
    const seen: Array<ReturnType<typeof comfy>> = [];
    // Two calls on one GPU slot: the second prompt waits in ComfyUI's queue while the first runs.
    const outcomes = await Promise.all(
      [2, 1].map((count) =>
        adapter({ provider: 'one-gpu' }).call(callWith({ count, onAnswered: () => seen.push(comfy()) })),
      ),
    );
    assert.deepEqual(
      outcomes.map((o) => (o.kind === 'success' ? o.images.length : o.kind)),
      [2, 1],
    );
    assert.equal(seen.length, 2, 'each call answered once');
    // The first answer: its prompt left the GPU (the second one took it, or waits no more), and not
    // one of its three outputs had been downloaded.
    assert.equal(seen[0]!.views, 0, 'answered before any output was downloaded');
    assert.equal(
      seen[0]!.running + seen[0]!.pending,
      1,
      'only the other prompt was still on the GPU or queued',
    );
    assert.equal(seen[1]!.running + seen[1]!.pending, 0, 'the last answer: nothing executing');
    assert.equal(comfy().views, 3, 'the outputs were downloaded after');
  });

  it('reconciles a finished prompt after a crash without queueing it again', async () => {
    const crashed = new AbortController();
    let remoteRef: string | undefined;
    const first = await adapter().call(
      callWith({
        signal: crashed.signal,
        saveRemoteRef: async (ref) => {
          remoteRef = ref;
        },
        onProgress: () => crashed.abort(), // the worker dies while the GPU is busy
      }),
    );
    assert.equal(first.kind, 'transient');
    assert.ok(remoteRef);
    for (let i = 0; i < 50 && !(await history(remoteRef))[remoteRef]; i += 1)
      await new Promise((resolve) => setTimeout(resolve, 20));
    let answered = 0;
    const retry = await adapter().call(
      callWith({
        remoteRef,
        saveRemoteRef: async () => assert.fail('nothing is queued again'),
        onAnswered: () => (answered += 1),
      }),
    );
    assert.equal(retry.kind, 'success');
    assert.equal(retry.images.length, 1);
    assert.equal(requests(), 1, 'the prompt ran once');
    assert.equal(answered, 1, 'the finished prompt answers the retry');
  });

  it('waits for a prompt that is still queued or running instead of queueing it again', async () => {
    const crashed = new AbortController();
    let remoteRef: string | undefined;
    await adapter({ provider: 'slow' }).call(
      callWith({
        jobId: 'job-retried',
        signal: crashed.signal,
        saveRemoteRef: async (ref) => {
          remoteRef = ref;
        },
        onProgress: () => crashed.abort(),
      }),
    );
    assert.ok(remoteRef);
    const progress: number[] = [];
    const retry = await adapter({ provider: 'slow' }).call(
      callWith({ jobId: 'job-retried', remoteRef, onProgress: (fraction) => progress.push(fraction) }),
    );
    assert.equal(retry.kind, 'success');
    assert.equal(requests('slow'), 1);
    assert.ok(progress.length > 0, 'progress of the running prompt still arrives');
  });

  it('queues again when ComfyUI restarted and forgot the prompt', async () => {
    let remoteRef: string | undefined;
    const first = await adapter().call(callWith({ saveRemoteRef: async (ref) => void (remoteRef = ref) }));
    assert.equal(first.kind, 'success');
    assert.ok(remoteRef);
    sim.restart('comfy');
    const refs: string[] = [];
    const retry = await adapter().call(
      callWith({ remoteRef, saveRemoteRef: async (ref) => void refs.push(ref) }),
    );
    assert.equal(retry.kind, 'success');
    assert.equal(requests(), 2);
    assert.equal(refs.length, 1);
    assert.notEqual(refs[0], remoteRef);
  });

  it('notices a restart while it waits', async () => {
    const outcome = await adapter({ provider: 'slow' }).call(
      callWith({ onProgress: () => sim.restart('slow') }),
    );
    assert.equal(outcome.kind, 'transient');
    assert.match(outcome.message, /neither queued nor in history/);
  });

  it('classifies a workflow ComfyUI rejects as permanent', async () => {
    const noOutput = { '3': WORKFLOW['3'] };
    const outcome = await adapter({ workflow: noOutput }).call(callWith());
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'invalid_workflow');
    assert.match(outcome.message, /prompt_no_outputs/);
  });

  it('classifies a scripted 429 with its retry-after', async () => {
    await faults(['http429']);
    const outcome = await adapter().call(callWith());
    assert.equal(outcome.kind, 'rate_limited');
    assert.equal(outcome.retryAfterMs, 5000);
  });

  itClassifiesFaults({
    inject: faults,
    call: () => adapter().call(callWith()),
    assertNoSecret,
    permanent: [
      { fault: 'refusal', reason: 'execution_error' },
      { fault: 'no_image', reason: 'no_image' },
      { fault: 'not_an_image', reason: 'not_an_image' },
    ],
  });

  it('times out a hanging queue request and a trickling one', async () => {
    await faults(['hang', 'trickle']);
    assert.equal((await adapter({ timeoutMs: 150 }).call(callWith())).kind, 'timeout');
    assert.equal((await adapter({ timeoutMs: 150 }).call(callWith())).kind, 'timeout');
  });

  it('times out when the prompt does not finish in time', async () => {
    const outcome = await adapter({ provider: 'slow', timeoutMs: 100 }).call(callWith());
    assert.equal(outcome.kind, 'timeout');
    assertNoSecret(outcome);
  });

  it('classifies an unreachable server as transient', async () => {
    const closed = await startFakeProvider({ providers: [] });
    const url = closed.url;
    await closed.close();
    const outcome = await createComfyUIProvider({ baseUrl: url, workflow: WORKFLOW, timeoutMs: 2000 }).call(
      callWith(),
    );
    assert.equal(outcome.kind, 'transient');
    assertNoSecret(outcome);
  });
});
