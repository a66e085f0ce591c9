/**
 * A split call is answered (its provider slots free) only when its last request has answered:
 * each part counts once, when it says so or when it returns.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withRequestLimit } from '../../src/providers/fan-out.ts';
import type { ProviderAdapter, ProviderCall, ProviderOutcome } from '../../src/providers/types.ts';

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const flush = () => new Promise((r) => setImmediate(r));

function call(overrides: Partial<ProviderCall>): ProviderCall {
  return {
    taskId: 't',
    jobId: 'j',
    step: 'generate',
    prompt: 'p',
    inputs: [],
    count: 3,
    seed: 1,
    firstIndex: 0,
    params: {},
    key: { id: 'k', secret: 's' },
    signal: new AbortController().signal,
    ...overrides,
  };
}

/** An adapter whose requests the test answers one by one, some of them saying so before returning. */
function heldAdapter() {
  const parts: Array<{ call: ProviderCall; result: ReturnType<typeof deferred<ProviderOutcome>> }> = [];
  const adapter: ProviderAdapter = {
    type: 'sim',
    call: (c) => {
      const result = deferred<ProviderOutcome>();
      parts.push({ call: c, result });
      return result.promise;
    },
  };
  return { adapter, parts };
}

const image = { data: Buffer.from('x'), mime: 'image/png' };

describe('a split call’s answer', () => {
  it('comes once, after the last of its requests has answered', async () => {
    const { adapter, parts } = heldAdapter();
    let answered = 0;
    const outcome = withRequestLimit(adapter, 1).call(call({ onAnswered: () => answered++ }));
    await flush();
    assert.equal(parts.length, 3, 'three requests of one image each');
    parts[0]!.call.onAnswered?.(); // says its answer is in, still checking its image
    parts[0]!.call.onAnswered?.(); // a second word from the same request counts once
    parts[1]!.result.resolve({ kind: 'transient', message: 'down' }); // answered by returning
    await flush();
    assert.equal(answered, 0, 'one request is still open');
    parts[2]!.call.onAnswered?.();
    assert.equal(answered, 1, 'the last request answered');
    parts[0]!.result.resolve({ kind: 'success', images: [image] });
    parts[2]!.result.resolve({ kind: 'success', images: [image] });
    const merged = await outcome;
    assert.equal(answered, 1, 'returning does not answer again');
    assert.equal(merged.kind, 'success');
  });

  it('passes an unsplit call’s own word through', async () => {
    const { adapter, parts } = heldAdapter();
    let answered = 0;
    const outcome = withRequestLimit(adapter, 5).call(call({ onAnswered: () => answered++ }));
    await flush();
    assert.equal(parts.length, 1);
    parts[0]!.call.onAnswered?.();
    assert.equal(answered, 1);
    parts[0]!.result.resolve({ kind: 'success', images: [image, image, image] });
    await outcome;
  });
});
