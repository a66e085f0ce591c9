import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { synthesizeImage } from '../../src/images/synth.ts';
import { createSimProvider } from '../../src/providers/sim.ts';
import type { SimProviderOptions } from '../../src/providers/sim.ts';
import type { ProviderCall, ProviderOutcome } from '../../src/providers/types.ts';
import { waitFor } from '../helpers/wait.ts';
import { deferred } from '../helpers/worker.ts';

function callOf(overrides: Partial<ProviderCall> = {}): ProviderCall {
  return {
    taskId: 'task-1',
    jobId: 'job-1',
    step: 'generate',
    prompt: 'a lighthouse at dusk',
    inputs: [],
    count: 1,
    seed: 1234,
    firstIndex: 0,
    params: {},
    key: { id: 'sim-key', secret: undefined },
    signal: new AbortController().signal,
    ...overrides,
  };
}

const instant = async (): Promise<void> => {};

/** A fast simulator for tests: no waiting, tiny images. */
function fastSim(overrides: Partial<SimProviderOptions> = {}) {
  return createSimProvider({
    latencyMs: 0,
    jitterMs: 0,
    errorRate: 0,
    width: 16,
    height: 16,
    sleep: instant,
    ...overrides,
  });
}

function images(outcome: ProviderOutcome): Buffer[] {
  assert.equal(outcome.kind, 'success', JSON.stringify(outcome));
  return outcome.kind === 'success' ? outcome.images.map((image) => image.data) : [];
}

describe('sim provider', () => {
  it('is of type sim', () => {
    assert.equal(fastSim().type, 'sim');
  });

  it('returns count PNGs, one per output index, rendered by synthesizeImage', async () => {
    const call = callOf({ count: 3, firstIndex: 5, seed: 99 });
    const outcome = await fastSim({ width: 32, height: 24 }).call(call);
    assert.equal(outcome.kind, 'success');
    assert.ok(outcome.kind === 'success');
    assert.equal(outcome.images.length, 3);
    for (const [i, image] of outcome.images.entries()) {
      assert.equal(image.mime, 'image/png');
      const meta = await sharp(image.data).metadata();
      assert.equal(meta.format, 'png');
      assert.equal(meta.width, 32);
      assert.equal(meta.height, 24);
      const expected = await synthesizeImage({
        prompt: call.prompt,
        index: 5 + i,
        seed: 99,
        width: 32,
        height: 24,
      });
      assert.ok(image.data.equals(expected), `image ${i} should be index ${5 + i}`);
    }
  });

  it('uses width and height from the call params when given', async () => {
    const [image] = images(await fastSim().call(callOf({ params: { width: 40, height: 20 } })));
    const meta = await sharp(image).metadata();
    assert.equal(meta.width, 40);
    assert.equal(meta.height, 20);
  });

  it('makes outputs depend on the first input image', async () => {
    const sim = fastSim();
    const input = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } })
      .png()
      .toBuffer();
    const other = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'blue' } })
      .png()
      .toBuffer();
    const [plain] = images(await sim.call(callOf()));
    const [withInput] = images(
      await sim.call(callOf({ inputs: [{ data: input, mime: 'image/png', role: 'input' }] })),
    );
    const [withOther] = images(
      await sim.call(callOf({ inputs: [{ data: other, mime: 'image/png', role: 'input' }] })),
    );
    assert.ok(plain && withInput && withOther);
    assert.ok(!plain.equals(withInput));
    assert.ok(!withInput.equals(withOther));
    const tint = createHash('sha256').update(input).digest('hex');
    const expected = await synthesizeImage({
      prompt: callOf().prompt,
      index: 0,
      seed: 1234,
      width: 16,
      height: 16,
      tint,
    });
    assert.ok(withInput.equals(expected));
  });

  it('waits latencyMs plus uniform jitter', async () => {
    const waits: number[] = [];
    const draws = [0, 0.9, 1 - 1e-9, 0.9, 0.5, 0.9];
    const sim = fastSim({
      latencyMs: 100,
      jitterMs: 20,
      random: () => draws.shift() ?? 0.5,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    for (let i = 0; i < 3; i += 1) await sim.call(callOf());
    assert.equal(waits.length, 3);
    assert.equal(waits[0], 80);
    assert.ok(Math.abs((waits[1] ?? 0) - 120) < 1e-6);
    assert.equal(waits[2], 100);
  });

  it('keeps every wait within latency ± jitter and never negative', async () => {
    const waits: number[] = [];
    const sleep = async (ms: number): Promise<void> => {
      waits.push(ms);
    };
    const sim = fastSim({ latencyMs: 50, jitterMs: 10, seed: 7, sleep });
    const clamped = fastSim({ latencyMs: 5, jitterMs: 50, seed: 7, sleep });
    for (let i = 0; i < 50; i += 1) await sim.call(callOf());
    assert.ok(waits.every((ms) => ms >= 40 && ms <= 60));
    waits.length = 0;
    for (let i = 0; i < 50; i += 1) await clamped.call(callOf());
    assert.ok(waits.every((ms) => ms >= 0 && ms <= 55));
    assert.ok(waits.some((ms) => ms === 0));
  });

  it('renders during its latency and answers at the later of the two, not their sum', async () => {
    const events: string[] = [];
    const renders: Array<Promise<Buffer>> = [];
    let latency = deferred();
    let rendering = deferred();
    const sim = fastSim({
      latencyMs: 300,
      sleep: async () => {
        events.push('sleep');
        await latency.promise;
      },
      render: (options) => {
        events.push(`render ${options.index}`);
        const rendered = rendering.promise.then(() => synthesizeImage(options));
        renders.push(rendered);
        return rendered;
      },
    });
    let settled = false;
    // Rendering done first: the answer still waits for the latency.
    let outcome = sim.call(callOf({ count: 2 })).finally(() => (settled = true));
    assert.deepEqual(events, ['render 0', 'render 1', 'sleep'], 'both images start before the wait');
    rendering.resolve();
    await Promise.all(renders);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'answered before its latency');
    latency.resolve();
    assert.equal(images(await outcome).length, 2);

    // The latency over first: the answer waits for the rendering.
    events.length = 0;
    renders.length = 0;
    latency = deferred();
    rendering = deferred();
    settled = false;
    outcome = sim.call(callOf({ count: 2 })).finally(() => (settled = true));
    latency.resolve();
    await waitFor('the latency to pass', () => events.includes('sleep'));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'answered before its images were rendered');
    rendering.resolve();
    assert.equal(images(await outcome).length, 2);
  });

  it('renders nothing for a call that fails (faults, errors, invalid counts)', async () => {
    let renders = 0;
    const render = async (): Promise<Buffer> => {
      renders += 1;
      return Buffer.alloc(0);
    };
    await fastSim({ render }).call(callOf({ prompt: '[sim:permanent] x' }));
    await fastSim({ render, errorRate: 1 }).call(callOf());
    await fastSim({ render }).call(callOf({ count: 0 }));
    assert.equal(renders, 0);
  });

  it('really waits with the default sleep', async () => {
    const sim = createSimProvider({ latencyMs: 60, jitterMs: 0, errorRate: 0, width: 8, height: 8 });
    const started = performance.now();
    const outcome = await sim.call(callOf());
    assert.equal(outcome.kind, 'success');
    assert.ok(performance.now() - started >= 55);
  });

  it('fails transiently at errorRate (seeded, so reproducible)', async () => {
    const kinds = async (seed: number, runs: number): Promise<string[]> => {
      const sim = fastSim({ errorRate: 0.3, seed, width: 4, height: 4 });
      const result: string[] = [];
      for (let i = 0; i < runs; i += 1) {
        const outcome = await sim.call(callOf());
        if (outcome.kind === 'transient') assert.equal(outcome.message, 'simulated provider error');
        result.push(outcome.kind);
      }
      return result;
    };
    const many = await kinds(42, 1000);
    const rate = many.filter((kind) => kind === 'transient').length / many.length;
    assert.ok(Math.abs(rate - 0.3) < 0.05, `error rate ${rate}`);
    assert.deepEqual(await kinds(42, 200), many.slice(0, 200));
    assert.notDeepEqual(await kinds(43, 200), many.slice(0, 200));
  });

  it('never fails at errorRate 0 and always fails at errorRate 1', async () => {
    const never = fastSim({ errorRate: 0, width: 4, height: 4 });
    const always = fastSim({ errorRate: 1, width: 4, height: 4 });
    for (let i = 0; i < 50; i += 1) {
      assert.equal((await never.call(callOf())).kind, 'success');
      assert.equal((await always.call(callOf())).kind, 'transient');
    }
  });

  it("reports a caller's abort while waiting as transient, not as a timeout", async () => {
    const sim = createSimProvider({ latencyMs: 10_000, jitterMs: 0, errorRate: 0 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const outcome = await sim.call(callOf({ signal: controller.signal }));
    assert.equal(outcome.kind, 'transient');
    assert.match((outcome as { message: string }).message, /aborted by the caller/);
  });

  it('returns at once for an already aborted signal, without waiting', async () => {
    let slept = false;
    const sim = fastSim({
      sleep: async () => {
        slept = true;
      },
    });
    const outcome = await sim.call(callOf({ signal: AbortSignal.abort() }));
    assert.equal(outcome.kind, 'transient');
    assert.equal(slept, false);
  });

  it('notices an abort when a custom sleep resolves early', async () => {
    const controller = new AbortController();
    const sim = fastSim({
      latencyMs: 1000,
      sleep: async () => {
        controller.abort();
      },
    });
    assert.equal((await sim.call(callOf({ signal: controller.signal }))).kind, 'transient');
  });

  it('times out on its own budget, whatever unrelated signal the caller passes', async () => {
    // A call that never answers in time: only the sleep's abort ends it.
    const sim = createSimProvider({ latencyMs: 60_000, jitterMs: 0, errorRate: 0, timeoutMs: 5 });
    for (let i = 0; i < 50; i++) {
      const unrelated = new AbortController();
      // The caller's signal may carry its own timer of the same length (the worker did): still a timeout.
      const signal =
        i % 2 === 0 ? unrelated.signal : AbortSignal.any([unrelated.signal, AbortSignal.timeout(5)]);
      const outcome = await sim.call(callOf({ signal }));
      assert.equal(outcome.kind, 'timeout', `iteration ${i}: ${JSON.stringify(outcome)}`);
    }
  });

  describe('fault directives', () => {
    it('[sim:permanent] refuses the content', async () => {
      const outcome = await fastSim().call(callOf({ prompt: 'a cat [sim:permanent]' }));
      assert.deepEqual(outcome, {
        kind: 'permanent',
        message: 'simulated content refusal',
        reason: 'content_policy',
      });
    });

    it('[sim:fail-index=N] fails only the batch covering index N', async () => {
      const sim = fastSim();
      const prompt = 'a cat [sim:fail-index=6]';
      const batch = (firstIndex: number) => sim.call(callOf({ prompt, firstIndex, count: 4 }));
      const covering = await batch(4);
      assert.equal(covering.kind, 'permanent');
      assert.ok(covering.kind === 'permanent');
      assert.match(covering.message, /6/);
      assert.equal((await batch(0)).kind, 'success');
      assert.equal((await batch(7)).kind, 'success');
      assert.equal((await sim.call(callOf({ prompt, firstIndex: 6, count: 1 }))).kind, 'permanent');
    });

    it('[sim:fail-index=N] may be repeated', async () => {
      const sim = fastSim();
      const prompt = '[sim:fail-index=1] [sim:fail-index=3]';
      const kinds = [];
      for (let index = 0; index < 5; index += 1)
        kinds.push((await sim.call(callOf({ prompt, firstIndex: index }))).kind);
      assert.deepEqual(kinds, ['success', 'permanent', 'success', 'permanent', 'success']);
    });

    it('[sim:rate-limited] and [sim:transient] force those outcomes', async () => {
      const sim = fastSim();
      assert.deepEqual(await sim.call(callOf({ prompt: 'x [sim:rate-limited]' })), {
        kind: 'rate_limited',
        message: 'simulated rate limit',
        retryAfterMs: 1000,
      });
      const custom = await sim.call(callOf({ prompt: 'x [sim:rate-limited=250]' }));
      assert.ok(custom.kind === 'rate_limited');
      assert.equal(custom.retryAfterMs, 250);
      assert.equal((await sim.call(callOf({ prompt: 'x [sim:transient]' }))).kind, 'transient');
    });

    it('still waits the latency before failing, and a directive does not shift the random sequence', async () => {
      const waits: number[] = [];
      const sleep = async (ms: number): Promise<void> => {
        waits.push(ms);
      };
      const a = fastSim({ latencyMs: 100, jitterMs: 50, seed: 3, sleep });
      const b = fastSim({ latencyMs: 100, jitterMs: 50, seed: 3, sleep });
      await a.call(callOf({ prompt: '[sim:permanent]' }));
      await a.call(callOf());
      const fromA = waits.splice(0);
      await b.call(callOf());
      await b.call(callOf());
      assert.deepEqual(fromA, waits);
    });
  });

  it('rejects invalid options', () => {
    assert.throws(() => createSimProvider({ latencyMs: -1, jitterMs: 0, errorRate: 0 }), RangeError);
    assert.throws(() => createSimProvider({ latencyMs: 0, jitterMs: 0, errorRate: 1.5 }), RangeError);
    assert.throws(() => createSimProvider({ latencyMs: 0, jitterMs: 0, errorRate: 0, width: 0 }), RangeError);
  });
});
