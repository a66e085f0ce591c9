import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { resolveConfig, type Config } from '../../src/config/load.ts';
import type { ConfigInput } from '../../src/config/schema.ts';

export function tempDir(prefix = 'darkroom-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  // On exit rather than with node:test's after(), which binds to whichever hook is running.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

type DeepPartial<T> = T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

function merge(base: Record<string, unknown>, extra: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(extra)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? merge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

/** The raw (file-shaped) config tests start from: fast simulator, fast loops, quiet logs. */
export function testConfigInput(
  overrides: DeepPartial<ConfigInput> & Record<string, unknown> = {},
): Record<string, unknown> {
  const base = {
    home: tempDir(),
    server: { port: 0, host: '127.0.0.1', logLevel: 'silent' },
    // Auth is on by default; these suites test other things. test/api/auth*.test.ts turn it on.
    auth: { enabled: false },
    limits: { maxRunningTasks: 40, maxQueuedTasks: 10_000, perUserRunningTasks: 2 },
    credits: { initialGrant: 1000 },
    plans: {
      free: { images: 2, credits: 2, weight: 1 },
      start: { images: 30, credits: 30, weight: 1 },
      pro: { images: 70, credits: 70, weight: 1 },
    },
    providers: {
      main: {
        type: 'sim',
        concurrency: 20,
        keys: [{ id: 'k1', rpm: 100_000, concurrency: 10 }],
        sim: { latencyMs: 20, jitterMs: 5, errorRate: 0 },
      },
    },
    pipelines: {
      photography: {
        steps: [
          { name: 'beautify', provider: 'main', calls: 1 },
          { name: 'generate', provider: 'main', batchSize: 5 },
          { name: 'store', concurrency: 5 },
        ],
      },
      fitting: {
        inputs: ['person', 'garment'],
        steps: [
          { name: 'generate', provider: 'main', batchSize: 5 },
          { name: 'store', concurrency: 5 },
        ],
      },
    },
    scheduler: { pollMs: 50, leaderLeaseMs: 1000 },
    worker: {
      concurrency: 16,
      leaseMs: 3000,
      heartbeatMs: 300,
      pollMs: 100,
      backoffBaseMs: 20,
      backoffMaxMs: 200,
      shutdownGraceMs: 2000,
    },
  };
  return merge(base, overrides as Record<string, unknown>);
}

export function testConfig(overrides: DeepPartial<ConfigInput> & Record<string, unknown> = {}): Config {
  return resolveConfig(testConfigInput(overrides), {}, 'test');
}
