import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createProviderAdapter } from '../../src/providers/registry.ts';
import type { ProviderCall } from '../../src/providers/types.ts';
import { testConfig } from '../helpers/config.ts';
import { useOneKeyProvider } from '../helpers/fake-provider.ts';

const CALLS = 30;

/**
 * A provider timeout is a timeout, however the caller's signal is made up: the simulator over HTTP
 * hangs every call, the adapter's budget is short, and the caller passes a signal of its own that
 * is unrelated (never aborted) or that carries a timer of the same length (what the worker passed).
 */
describe('a provider call that hangs past its timeout', () => {
  const fake = useOneKeyProvider({ concurrency: 100, latencyMs: 1 });

  it('is reported as timeout on every call, never as aborted by the caller', async () => {
    const response = await fetch(`${fake().url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'main', faults: Array(CALLS).fill('hang') }),
    });
    assert.equal(response.status, 200);
    const timeoutMs = 20;
    const config = testConfig({
      providers: { main: { type: 'sim', baseUrl: fake().url, timeoutMs, keys: [{ id: 'k1' }] } },
    });
    const adapter = createProviderAdapter(config.providers.main!, 1);
    const kinds: string[] = [];
    for (let i = 0; i < CALLS; i++) {
      const unrelated = new AbortController();
      const signal =
        i % 2 === 0 ? unrelated.signal : AbortSignal.any([unrelated.signal, AbortSignal.timeout(timeoutMs)]);
      const call: ProviderCall = {
        taskId: 't',
        jobId: `j${i}`,
        step: 'generate',
        prompt: 'a hanging call',
        inputs: [],
        count: 1,
        seed: i,
        firstIndex: 0,
        params: {},
        key: { id: 'k1', secret: undefined },
        signal,
      };
      const outcome = await adapter.call(call);
      kinds.push(outcome.kind === 'success' ? 'success' : `${outcome.kind}: ${outcome.message}`);
    }
    assert.deepEqual(
      kinds.filter((k) => !k.startsWith('timeout: ')),
      [],
      'every hanging call is a timeout',
    );
  });
});
