/**
 * Shared set-up of the OpenAI contract tests: the strict simulator with one OpenAI provider, the
 * official `openai` client pointed at it, and darkroom's adapter pointed at the same place.
 */
import OpenAI from 'openai';
import sharp from 'sharp';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { createOpenAIProvider } from '../../src/providers/openai.ts';
import type { ProviderAdapter, ProviderCall } from '../../src/providers/types.ts';

export const SECRET = 'sk-proj-contract-test-2f8a1';

export async function startOpenAISimulator(): Promise<FakeProviderHandle> {
  return startFakeProvider({
    providers: [
      {
        name: 'oa',
        keys: [{ id: 'oa-key', secret: SECRET, rpm: 100_000, concurrency: 50 }],
        latencyMs: 0,
        jitterMs: 0,
        errorRate: 0,
      },
    ],
  });
}

/** The official client as a user would configure it; the SDK's own retries are off so every answer is seen. */
export function sdkClient(sim: FakeProviderHandle): OpenAI {
  return new OpenAI({ apiKey: SECRET, baseURL: `${sim.url}/p/oa/v1`, maxRetries: 0, timeout: 60_000 });
}

export function darkroomAdapter(sim: FakeProviderHandle, model: string): ProviderAdapter {
  return createOpenAIProvider({ baseUrl: `${sim.url}/p/oa`, model, timeoutMs: 60_000 });
}

export function call(overrides: Partial<ProviderCall> = {}): ProviderCall {
  return {
    taskId: 'task-1',
    jobId: 'job-1',
    step: 'generate',
    prompt: 'a paper boat on a pond',
    inputs: [],
    count: 1,
    seed: 7,
    firstIndex: 0,
    params: {},
    key: { id: 'oa-key', secret: SECRET },
    signal: new AbortController().signal,
    ...overrides,
  };
}

export function photo(color: string): Promise<Buffer> {
  return sharp({ create: { width: 32, height: 32, channels: 3, background: color } })
    .png()
    .toBuffer();
}
