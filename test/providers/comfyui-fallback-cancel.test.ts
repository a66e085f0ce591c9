import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createComfyUIProvider } from '../../src/providers/comfyui.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { CallAborted } from '../../src/providers/types.ts';
import { waitFor } from '../helpers/wait.ts';
import {
  callWith,
  historyOf,
  startProxy,
  TWO_SAMPLERS,
  WORKFLOW,
  type UpgradePolicy,
} from './comfyui-fixtures.ts';

/** `GET /queue` as ComfyUI's server.py answers it: where a prompt is right now. */
async function queuePlace(baseUrl: string, promptId: string): Promise<'running' | 'pending' | 'absent'> {
  const queue = (await (await fetch(`${baseUrl}/queue`)).json()) as Record<string, unknown[][]>;
  if (queue.queue_running?.some((row) => row[1] === promptId)) return 'running';
  return queue.queue_pending?.some((row) => row[1] === promptId) ? 'pending' : 'absent';
}

describe('comfyui without a websocket, cancel and progress', () => {
  let sim: FakeProviderHandle;
  const comfyStats = (provider: string) => sim.stats().providers[provider]?.comfyui;
  const adapter = (provider: string, baseUrl = `${sim.url}/p/${provider}`, workflow: object = WORKFLOW) =>
    createComfyUIProvider({ baseUrl, workflow, timeoutMs: 10_000, pollIntervalMs: 20 });

  before(async () => {
    sim = await startFakeProvider({
      providers: [
        {
          name: 'gpu',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 40,
          jitterMs: 0,
          errorRate: 0,
        },
        {
          name: 'slow',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 400,
          jitterMs: 0,
          errorRate: 0,
        },
        // A minute of GPU time: its prompts end only when interrupted, whatever the machine's load.
        {
          name: 'held',
          keys: [{ id: 'gpu', rpm: 1, concurrency: 1 }],
          latencyMs: 60_000,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
  });
  after(() => sim.close());
  beforeEach(async () => {
    await fetch(`${sim.url}/_sim/reset`, { method: 'POST' });
    sim.restart();
  });

  for (const policy of ['forbid', 'reset', 'strip'] as UpgradePolicy[]) {
    it(`falls back to polling /history and /queue when a proxy refuses the websocket (${policy})`, async () => {
      const proxy = await startProxy(sim.url, policy);
      try {
        let ref: string | undefined;
        const outcome = await adapter('gpu', `${proxy.url}/p/gpu`).call(
          callWith({ count: 1, saveRemoteRef: async (r) => void (ref = r) }),
        );
        assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
        assert.equal(outcome.images.length, 1);
        assert.equal(proxy.upgrades(), 1, 'the websocket was tried through the proxy');
        const entry = await historyOf(sim, 'gpu', ref!);
        assert.equal((entry?.status as { status_str: string }).status_str, 'success');
        assert.equal(sim.stats().providers.gpu?.keys.gpu?.requests, 1, 'queued once');
      } finally {
        await proxy.close();
      }
    });
  }

  it('classifies a failed prompt the same way without a websocket', async () => {
    const proxy = await startProxy(sim.url, 'forbid');
    try {
      await fetch(`${sim.url}/_sim/faults`, {
        method: 'POST',
        body: JSON.stringify({ provider: 'gpu', faults: ['refusal'] }),
      });
      const outcome = await adapter('gpu', `${proxy.url}/p/gpu`).call(callWith());
      assert.equal(outcome.kind, 'permanent');
      assert.equal(outcome.reason, 'execution_error');
      const invalid = await adapter('gpu', `${proxy.url}/p/gpu`, { '9': WORKFLOW['9'] }).call(callWith());
      assert.equal(invalid.kind, 'permanent');
      assert.equal(invalid.reason, 'invalid_workflow', 'a workflow ComfyUI rejects, not the missing socket');
    } finally {
      await proxy.close();
    }
  });

  it('reports progress over every node of a workflow with two samplers, never going back', async () => {
    const progress: number[] = [];
    const outcome = await adapter('gpu', undefined, TWO_SAMPLERS).call(
      callWith({ onProgress: (fraction) => progress.push(fraction) }),
    );
    assert.equal(outcome.kind, 'success');
    // 9 nodes executing in the order 4 6 7 5 3 10 11 8 9; sampler 3 counts 1..3, sampler 11 counts 1..2.
    const expected = [1, 2, 3, 4, 4 + 1 / 3, 4 + 2 / 3, 5, 6, 6 + 1 / 2, 7, 8, 9].map((done) => done / 9);
    assert.deepEqual(progress, expected);
  });

  it('counts the nodes ComfyUI serves from its cache as done', async () => {
    await adapter('gpu').call(callWith({ prompt: 'first' }));
    const progress: number[] = [];
    await adapter('gpu').call(callWith({ prompt: 'second', onProgress: (f) => progress.push(f) }));
    // The checkpoint (4), the negative prompt (7) and the empty latent (5) are unchanged: cached.
    assert.equal(progress[0], 3 / 7);
    assert.equal(progress.at(-1), 1);
  });

  it('interrupts the running prompt of a canceled call and frees the GPU', async () => {
    const controller = new AbortController();
    let ref: string | undefined;
    const call = adapter('held').call(
      callWith({ signal: controller.signal, saveRemoteRef: async (r) => void (ref = r) }),
    );
    await waitFor('the prompt running', () => comfyStats('held')?.running === 1 && ref !== undefined);
    controller.abort(new CallAborted('canceled'));
    const outcome = await call;
    assert.equal(outcome.kind, 'permanent');
    assert.equal(outcome.reason, 'canceled');
    assert.match(outcome.message, /interrupted/);
    assert.deepEqual(comfyStats('held')?.interrupts, [{ prompt_id: ref, interrupted: [ref] }]);
    const entry = await waitFor('the interrupted prompt in history', () => historyOf(sim, 'held', ref!));
    const status = entry.status as { status_str: string; messages: Array<[string, unknown]> };
    assert.equal(status.status_str, 'error');
    assert.ok(status.messages.some(([type]) => type === 'execution_interrupted'));
    assert.equal(comfyStats('held')?.running, 0, 'the GPU slot is free');
  });

  it('removes a canceled call’s prompt that still waits in the queue', async () => {
    const running = new AbortController();
    let runningRef: string | undefined;
    const first = adapter('held').call(
      callWith({ signal: running.signal, saveRemoteRef: async (r) => void (runningRef = r) }),
    );
    await waitFor('the first prompt running', () => comfyStats('held')?.running === 1);
    const waiting = new AbortController();
    let ref: string | undefined;
    const second = adapter('held').call(
      callWith({ signal: waiting.signal, saveRemoteRef: async (r) => void (ref = r) }),
    );
    await waitFor(
      'the second prompt queued',
      async () => ref !== undefined && (await queuePlace(`${sim.url}/p/held`, ref)) === 'pending',
    );
    waiting.abort(new CallAborted('canceled'));
    const outcome = await second;
    assert.equal(outcome.kind, 'permanent');
    assert.match(outcome.message, /removed from the queue/);
    assert.deepEqual(comfyStats('held')?.deleted, [ref]);
    assert.deepEqual(comfyStats('held')?.interrupts, [], 'the running prompt of another call is left alone');
    assert.equal(await queuePlace(`${sim.url}/p/held`, runningRef!), 'running');
    running.abort(new CallAborted('canceled'));
    const firstOutcome = await first;
    assert.equal(firstOutcome.kind, 'permanent');
    assert.match(firstOutcome.message, /interrupted/);
    await waitFor('the GPU to be idle', () => comfyStats('held')?.running === 0);
    assert.equal(await historyOf(sim, 'held', ref!), undefined, 'the canceled prompt never ran');
  });

  for (const reason of ['shutdown', 'lease_lost'] as const) {
    it(`leaves the prompt running when the call is aborted for ${reason}`, async () => {
      const controller = new AbortController();
      let ref: string | undefined;
      const outcome = await adapter('slow').call(
        callWith({
          signal: controller.signal,
          saveRemoteRef: async (r) => void (ref = r),
          onProgress: () => controller.abort(new CallAborted(reason)),
        }),
      );
      assert.equal(outcome.kind, 'transient');
      assert.deepEqual(comfyStats('slow')?.interrupts, []);
      const entry = await waitFor('the prompt to finish on its own', () => historyOf(sim, 'slow', ref!));
      assert.equal((entry.status as { status_str: string }).status_str, 'success');
    });
  }

  it('does not interrupt a prompt whose call timed out (a retry reconciles it)', async () => {
    const outcome = await createComfyUIProvider({
      baseUrl: `${sim.url}/p/slow`,
      workflow: WORKFLOW,
      timeoutMs: 100,
      pollIntervalMs: 20,
    }).call(callWith());
    assert.equal(outcome.kind, 'timeout');
    assert.deepEqual(comfyStats('slow')?.interrupts, []);
  });
});
