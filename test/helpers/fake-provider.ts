import { after, before } from 'node:test';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';

export interface OneKeyProvider {
  /** The simulated provider's name (its path /p/<name>); default 'main'. */
  name?: string;
  /** The key's id; default 'k1'. */
  keyId?: string;
  /** The key's requests a minute; default 100,000 (no rate limit in the way). */
  rpm?: number;
  /** The key's concurrency: requests past it are refused as the real provider would. */
  concurrency: number;
  latencyMs: number;
  /** Default 0: every call takes exactly latencyMs. */
  jitterMs?: number;
}

/**
 * Starts the provider simulator with one provider of one key, without errors, before the
 * surrounding suite's tests and closes it after them. Returns a getter for its handle (set once
 * the suite's `before` hooks ran).
 */
export function useOneKeyProvider(options: OneKeyProvider): () => FakeProviderHandle {
  let fake: FakeProviderHandle | undefined;
  before(async () => {
    fake = await startFakeProvider({
      providers: [
        {
          name: options.name ?? 'main',
          keys: [
            { id: options.keyId ?? 'k1', rpm: options.rpm ?? 100_000, concurrency: options.concurrency },
          ],
          latencyMs: options.latencyMs,
          jitterMs: options.jitterMs ?? 0,
          errorRate: 0,
        },
      ],
    });
  });
  after(async () => {
    await fake?.close();
  });
  return () => {
    if (!fake) throw new Error('the fake provider starts in a before hook: read it inside a test');
    return fake;
  };
}
