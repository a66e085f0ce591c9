import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide, providerFits } from '../../src/policy/admission.ts';
import { chooseKey, keyAvailableAtMs } from '../../src/policy/keys.ts';
import type { JobView, KeyView, PolicyInput, TaskView } from '../../src/policy/types.ts';

/**
 * A job of several requests (a batch of N images on a model that returns one image per request,
 * e.g. Gemini image models: google-gemini/gemini-cli#10370) costs N against every request limit.
 */

const NOW = 1_000_000;
const W = 61_000;

const key = (over: Partial<KeyView> = {}): KeyView => ({
  id: 'k1',
  rpm: 100,
  concurrency: 10,
  inFlight: 0,
  usable: true,
  cooldownUntilMs: 0,
  recentStartsMs: [],
  ...over,
});
const task = (id: string, userId: string, over: Partial<TaskView> = {}): TaskView => ({
  id,
  userId,
  weight: 1,
  running: true,
  createdAtMs: 0,
  remainingUnits: 10,
  ...over,
});
const job = (id: string, requests: number, over: Partial<JobView> = {}): JobView => ({
  id,
  taskId: 't1',
  userId: 'u1',
  kind: 'generate',
  resource: 'api',
  readyAtMs: 0,
  order: Number(id.replace(/\D/g, '') || 0),
  requests,
  ...over,
});
const input = (over: Partial<PolicyInput> = {}): PolicyInput => ({
  nowMs: NOW,
  limits: { maxRunningTasks: 10, perUserRunningTasks: 2 },
  fairness: { agingSeconds: 60, shortWorkPreference: 0, maxUnits: 70 },
  rpmWindowMs: W,
  workerSlotsFree: 100,
  tasks: [task('t1', 'u1')],
  jobs: [],
  providers: [{ name: 'api', concurrency: 20, effectiveConcurrency: 20, inFlight: 0, keys: [key()] }],
  stores: [],
  userInFlight: {},
  ...over,
});

describe('request cost of a job', () => {
  it('a key with rpm 12 takes two jobs of 5 requests in a window, not three; the third waits for the window', () => {
    const jobs = [job('j1', 5), job('j2', 5), job('j3', 5)];
    const d = decide(
      input({
        jobs,
        providers: [
          {
            name: 'api',
            concurrency: 20,
            effectiveConcurrency: 20,
            inFlight: 0,
            keys: [key({ rpm: 12, concurrency: 20 })],
          },
        ],
      }),
    );
    assert.deepEqual(
      d.admissions.map((a) => [a.jobId, a.requests]),
      [
        ['j1', 5],
        ['j2', 5],
      ],
    );
    // Ten requests at NOW: a third job of 5 needs 3 of them out of the window (12 − 10 < 5).
    assert.equal(d.nextWakeAtMs, NOW + W);
  });

  it('in-flight limits count requests: key concurrency 10 holds two jobs of 5, provider concurrency 7 one', () => {
    const jobs = [job('j1', 5), job('j2', 5)];
    assert.equal(decide(input({ jobs })).admissions.length, 2);
    const tight = input({
      jobs,
      providers: [{ name: 'api', concurrency: 7, effectiveConcurrency: 7, inFlight: 0, keys: [key()] }],
    });
    assert.deepEqual(
      decide(tight).admissions.map((a) => a.jobId),
      ['j1'],
    );
  });

  it('a smaller job still fits where a larger one does not (no head-of-line block on request cost)', () => {
    const jobs = [job('j1', 5), job('j2', 1, { taskId: 't2', userId: 'u2' })];
    const d = decide(
      input({
        tasks: [task('t1', 'u1'), task('t2', 'u2')],
        jobs,
        providers: [
          {
            name: 'api',
            concurrency: 20,
            effectiveConcurrency: 20,
            inFlight: 0,
            keys: [key({ concurrency: 3 })],
          },
        ],
      }),
    );
    assert.deepEqual(
      d.admissions.map((a) => a.jobId),
      ['j2'],
    );
  });

  it('all requests of a job go to one key that can take them all', () => {
    const keys = [key({ id: 'a', concurrency: 3 }), key({ id: 'b', concurrency: 5, rpm: 50 })];
    assert.equal(chooseKey(keys, NOW, W, 5)?.id, 'b');
    assert.equal(chooseKey(keys, NOW, W, 6), undefined);
  });

  it('the key frees for n requests when the (rpm − n + 1)-th newest request leaves the window', () => {
    const k = key({ rpm: 4, recentStartsMs: [1000, 2000, 3000] });
    // One more fits now; three more need 1000 and 2000 gone.
    assert.equal(keyAvailableAtMs(k, 5000, W, 1), 5000);
    assert.equal(keyAvailableAtMs(k, 5000, W, 3), 2000 + W);
    assert.equal(keyAvailableAtMs(k, 5000, W, 5), Number.POSITIVE_INFINITY);
  });

  it('an idle provider takes one job larger than its AIMD-shrunk concurrency, never past its cap', () => {
    assert.equal(providerFits({ concurrency: 20, effectiveConcurrency: 2, inFlight: 0 }, 5), true);
    assert.equal(providerFits({ concurrency: 20, effectiveConcurrency: 2, inFlight: 1 }, 5), false);
    assert.equal(providerFits({ concurrency: 4, effectiveConcurrency: 4, inFlight: 0 }, 5), false);
    const shrunk = input({
      jobs: [job('j1', 5), job('j2', 5)],
      providers: [{ name: 'api', concurrency: 20, effectiveConcurrency: 2, inFlight: 0, keys: [key()] }],
    });
    assert.deepEqual(
      decide(shrunk).admissions.map((a) => a.jobId),
      ['j1'],
    );
  });

  // Store jobs hold several images now (one call's batch, up to the store concurrency): their
  // `requests` are those images, held against the store, never against a key.
  it('store jobs take no key; their requests are their images, held against the store', () => {
    const d = decide(
      input({
        jobs: [
          job('s1', 5, { kind: 'store', resource: 'store' }),
          job('s2', 1, { kind: 'store', resource: 'store' }),
        ],
        stores: [{ name: 'store', concurrency: 5, inFlight: 0 }],
      }),
    );
    assert.deepEqual(d.admissions, [
      { jobId: 's1', taskId: 't1', resource: 'store', startsTask: false, requests: 5 },
    ]);
  });
});
