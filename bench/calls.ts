/**
 * What one provider call costs darkroom beyond the provider's latency: the adapter darkroom builds
 * for a `sim` provider with a baseUrl (OpenAI images wire format) against the simulator in a
 * worker thread, 5 calls in flight on one key of concurrency 5, 5 images of 256×256 a call,
 * 300 ms of latency. No database: the adapter's request, transfer, JSON, base64 and image checks.
 */
import { createProviderAdapter } from '../src/providers/registry.ts';
import { resolveConfig } from '../src/config/load.ts';
import { startFakeProviderThread } from './fake-provider-thread.ts';

const CALLS = { latencyMs: 300, inFlight: 5, images: 5, perLane: 12 };

export async function runCallsBench(): Promise<Record<string, unknown>> {
  const fake = await startFakeProviderThread({
    providers: [
      {
        name: 'main',
        keys: [{ id: 'k1', rpm: 100_000, concurrency: CALLS.inFlight }],
        latencyMs: CALLS.latencyMs,
        jitterMs: 0,
        errorRate: 0,
      },
    ],
  });
  try {
    const config = resolveConfig(
      {
        providers: {
          main: {
            type: 'sim',
            baseUrl: fake.url,
            concurrency: CALLS.inFlight,
            keys: [{ id: 'k1', rpm: 100_000, concurrency: CALLS.inFlight }],
          },
        },
      },
      {},
      'bench',
    );
    const adapter = createProviderAdapter(config.providers.main!, 1);
    const durations: number[] = [];
    let next = 0;
    const lane = async (): Promise<void> => {
      for (let i = 0; i < CALLS.perLane; i += 1) {
        const n = next++;
        const started = performance.now();
        const outcome = await adapter.call({
          taskId: 't',
          jobId: `j${n}`,
          step: 'generate',
          prompt: `call ${n}`,
          inputs: [],
          count: CALLS.images,
          seed: n,
          firstIndex: 0,
          params: { size: '256x256' },
          key: { id: 'k1', secret: undefined },
          signal: new AbortController().signal,
        });
        if (outcome.kind !== 'success') throw new Error(`call failed: ${outcome.message}`);
        durations.push(performance.now() - started);
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: CALLS.inFlight }, lane));
    const wall = performance.now() - started;
    durations.sort((a, b) => a - b);
    const q = (p: number) =>
      Math.round(durations[Math.min(durations.length - 1, Math.floor(p * durations.length))]!);
    return {
      setup: CALLS,
      calls: durations.length,
      mean_call_ms: Math.round(durations.reduce((a, b) => a + b, 0) / durations.length),
      p50_ms: q(0.5),
      p90_ms: q(0.9),
      // Every call at exactly the latency, CALLS.inFlight at a time.
      wall_ms: Math.round(wall),
      bound_ms: (durations.length * CALLS.latencyMs) / CALLS.inFlight,
    };
  } finally {
    await fake.close();
  }
}
