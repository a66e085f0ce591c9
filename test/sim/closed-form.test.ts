import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { simulate } from '../../src/sim/engine.ts';
import { summarize } from '../../src/sim/metrics.ts';
import { config, scenario, sixtyUsers } from './helpers.ts';

describe('closed-form cases match the hand calculation exactly', () => {
  it('one Pro task alone: beautify 8 s, 14 batches on 3 slots in 5 waves of 8 s, stores of 2 s → 52 s', () => {
    const c = config({
      plans: { pro: { images: 70, credits: 70 } },
      providers: {
        api: {
          type: 'openai',
          concurrency: 3,
          maxImagesPerRequest: 5, // one call returns the batch (the hand calculation's assumption)
          keys: [{ id: 'k', rpm: 600, concurrency: 3 }],
        },
      },
      pipelines: {
        photography: {
          steps: [
            { name: 'beautify', provider: 'api', calls: 1 },
            { name: 'generate', provider: 'api', batchSize: 5 },
            { name: 'store', concurrency: 5 },
          ],
        },
      },
    });
    const run = simulate(
      c,
      scenario({
        arrivals: [{ burst: { users: 1, plan: 'pro' } }],
        latency: { beautify: 8000, generate: 8000, store: 2000 },
      }),
    );
    const t = run.tasks[0]!;
    assert.equal(t.startedMs, 0);
    // 8 (beautify) + 5 waves × 8 = 48; the last wave's 10 images store in 2 rounds of 2 s → 52
    assert.equal(t.finishedMs, 52_000);
    assert.equal(t.done, 70);
    assert.equal(run.providers[0]!.busyMs, 15 * 8000);
    assert.equal(run.providers[0]!.calls, 15);
  });

  it('one key of 6 RPM, 10 one-second calls: 6 at once, the other 4 when the window slides (61 s with the margin)', () => {
    const c = config({
      plans: { p: { images: 10, credits: 10 } },
      providers: { api: { type: 'gemini', concurrency: 10, keys: [{ id: 'k', rpm: 6, concurrency: 10 }] } },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'api', batchSize: 1 },
            { name: 'store', concurrency: 100 },
          ],
        },
      },
    });
    const run = simulate(
      c,
      scenario({
        type: 'gen',
        arrivals: [{ burst: { users: 1, plan: 'p' } }],
        latency: { generate: 1000, store: 0 },
      }),
    );
    assert.equal(run.tasks[0]!.finishedMs, 62_000);
    assert.equal(run.providers[0]!.keys[0]!.maxIn60s, 6);
    assert.equal(run.providers[0]!.rateLimited, 0);
  });

  it('document 01: 60 users, 3 keys × 15 RPM, 40 slots — 40 start at once, 5 at 10 s, 15 only at 61 s', () => {
    const { config: c, scenario: s } = sixtyUsers(3);
    const run = simulate(c, s);
    const waits = run.tasks.map((t) => t.startedMs! - t.submittedMs).sort((a, b) => a - b);
    assert.deepEqual(
      [
        waits.filter((w) => w === 0).length,
        waits.filter((w) => w === 10_000).length,
        waits.filter((w) => w === 61_000).length,
      ],
      [40, 5, 15],
    );
    const report = summarize(run, c, s);
    assert.equal(report.overall.wait.p95, 61);
    assert.equal(report.overall.completion.max, 71);
    assert.equal(report.simulatedSeconds, 71);
    assert.ok(Math.abs(report.overall.wait.mean - (5 * 10 + 15 * 61) / 60) < 1e-9);
  });
});
