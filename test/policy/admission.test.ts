import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cannotMeetDeadline, decide, effectiveWeight, userScore } from '../../src/policy/admission.ts';
import type { JobView, KeyView, PolicyInput, TaskView } from '../../src/policy/types.ts';

const NOW = 1_000_000;

function key(over: Partial<KeyView> = {}): KeyView {
  return {
    id: 'k1',
    rpm: 100,
    concurrency: 10,
    inFlight: 0,
    usable: true,
    cooldownUntilMs: 0,
    recentStartsMs: [],
    ...over,
  };
}

function task(id: string, userId: string, over: Partial<TaskView> = {}): TaskView {
  return { id, userId, weight: 1, running: false, createdAtMs: 0, remainingUnits: 10, ...over };
}

function job(id: string, taskId: string, userId: string, over: Partial<JobView> = {}): JobView {
  return { id, taskId, userId, kind: 'generate', resource: 'api', readyAtMs: 0, order: 0, ...over };
}

function input(over: Partial<PolicyInput> = {}): PolicyInput {
  return {
    nowMs: NOW,
    limits: { maxRunningTasks: 10, perUserRunningTasks: 2 },
    fairness: { agingSeconds: 60, shortWorkPreference: 0, maxUnits: 70 },
    rpmWindowMs: 61_000,
    workerSlotsFree: 100,
    tasks: [],
    jobs: [],
    providers: [{ name: 'api', concurrency: 10, effectiveConcurrency: 10, inFlight: 0, keys: [key()] }],
    stores: [{ name: 'store', concurrency: 2, inFlight: 0 }],
    userInFlight: {},
    ...over,
  };
}

const ids = (d: ReturnType<typeof decide>) => d.admissions.map((a) => a.jobId);

describe('decide(): limits', () => {
  it('admits nothing without free worker slots, and no more than the free slots', () => {
    const jobs = [
      job('a', 't1', 'u1', { order: 0 }),
      job('b', 't1', 'u1', { order: 1 }),
      job('c', 't1', 'u1', { order: 2 }),
    ];
    assert.deepEqual(ids(decide(input({ workerSlotsFree: 0, tasks: [task('t1', 'u1')], jobs }))), []);
    assert.deepEqual(ids(decide(input({ workerSlotsFree: 2, tasks: [task('t1', 'u1')], jobs }))), ['a', 'b']);
  });

  it('starts no task past maxRunningTasks or perUserRunningTasks, but keeps feeding running tasks', () => {
    const tasks = [
      task('t1', 'u1', { running: true }),
      task('t2', 'u2'),
      task('t3', 'u1', { createdAtMs: 5 }),
    ];
    const jobs = [job('a', 't1', 'u1'), job('b', 't2', 'u2'), job('c', 't3', 'u1')];
    const d = decide(input({ limits: { maxRunningTasks: 1, perUserRunningTasks: 2 }, tasks, jobs }));
    assert.deepEqual(ids(d), ['a']);
    const d2 = decide(input({ limits: { maxRunningTasks: 5, perUserRunningTasks: 1 }, tasks, jobs }));
    assert.deepEqual(ids(d2).sort(), ['a', 'b']);
    assert.deepEqual(d2.admissions.map((a) => [a.jobId, a.startsTask]).sort(), [
      ['a', false],
      ['b', true],
    ]);
  });

  it('respects the provider’s AIMD-effective concurrency (rounded down, at least 1) and each key’s limits', () => {
    const tasks = [task('t1', 'u1', { running: true })];
    const jobs = Array.from({ length: 6 }, (_, i) => job(`j${i}`, 't1', 'u1', { order: i }));
    const prov = (eff: number, keys: KeyView[]) => [
      { name: 'api', concurrency: 10, effectiveConcurrency: eff, inFlight: 0, keys },
    ];
    assert.equal(decide(input({ tasks, jobs, providers: prov(2.7, [key()]) })).admissions.length, 2);
    assert.equal(decide(input({ tasks, jobs, providers: prov(0.2, [key()]) })).admissions.length, 1);
    assert.equal(
      decide(input({ tasks, jobs, providers: prov(10, [key({ concurrency: 3 })]) })).admissions.length,
      3,
    );
    assert.equal(
      decide(input({ tasks, jobs, providers: prov(10, [key({ rpm: 4, recentStartsMs: [NOW - 1000] })]) }))
        .admissions.length,
      3,
    );
  });

  it('store jobs take no key and respect the store’s concurrency', () => {
    const tasks = [task('t1', 'u1', { running: true })];
    const jobs = Array.from({ length: 4 }, (_, i) =>
      job(`s${i}`, 't1', 'u1', { kind: 'store', resource: 'store', order: 100000 + i }),
    );
    const d = decide(input({ tasks, jobs }));
    assert.deepEqual(ids(d), ['s0', 's1']);
    assert.ok(d.admissions.every((a) => a.keyId === undefined));
  });

  it('counts a store job of n images as n against the store, and keeps a user’s store jobs in order', () => {
    const stores = [{ name: 'store', concurrency: 5, inFlight: 1 }];
    const tasks = [task('t1', 'u1', { running: true }), task('t2', 'u2', { running: true })];
    const store = (id: string, taskId: string, userId: string, images: number, order: number) =>
      job(id, taskId, userId, { kind: 'store', resource: 'store', order, requests: images });
    // 1 image in flight: u1's 3 fits (4), then neither its 2 (6) nor — behind it — its 1;
    // u2's 1 fits (5).
    const jobs = [
      store('a3', 't1', 'u1', 3, 100000),
      store('a2', 't1', 'u1', 2, 100003),
      store('a1', 't1', 'u1', 1, 100005),
      store('b1', 't2', 'u2', 1, 100000),
    ];
    const d = decide(input({ tasks, jobs, stores }));
    assert.deepEqual(ids(d).sort(), ['a3', 'b1']);
    assert.deepEqual(
      d.admissions.map((a) => a.requests),
      d.admissions.map((a) => (a.jobId === 'a3' ? 3 : 1)),
      'each admission records the images it holds',
    );
    // An idle store takes one job larger than its concurrency (it was lowered), and only that one.
    const big = decide(
      input({
        tasks,
        jobs: [store('x', 't1', 'u1', 4, 100000), store('y', 't2', 'u2', 1, 100000)],
        stores: [{ name: 'store', concurrency: 2, inFlight: 0 }],
      }),
    );
    assert.equal(big.admissions.length, 1);
  });
});

describe('decide(): keys and wake-ups', () => {
  it('spreads calls over the pool by headroom and says when a spent pool frees', () => {
    const tasks = [task('t1', 'u1', { running: true })];
    const jobs = Array.from({ length: 5 }, (_, i) => job(`j${i}`, 't1', 'u1', { order: i }));
    const keys = [key({ id: 'a', rpm: 2, recentStartsMs: [NOW - 30_000] }), key({ id: 'b', rpm: 2 })];
    const d = decide(
      input({
        tasks,
        jobs,
        providers: [{ name: 'api', concurrency: 10, effectiveConcurrency: 10, inFlight: 0, keys }],
      }),
    );
    assert.deepEqual(
      d.admissions.map((a) => a.keyId),
      ['b', 'a', 'b'],
    );
    // key a frees when its request of NOW − 30 s leaves the 61 s window
    assert.equal(d.nextWakeAtMs, NOW - 30_000 + 61_000);
  });

  it('never uses a cooling or unusable key; wakes when the cool-down ends', () => {
    const tasks = [task('t1', 'u1', { running: true })];
    const jobs = [job('j', 't1', 'u1')];
    const keys = [key({ id: 'a', cooldownUntilMs: NOW + 5000 }), key({ id: 'b', usable: false })];
    const d = decide(
      input({
        tasks,
        jobs,
        providers: [{ name: 'api', concurrency: 10, effectiveConcurrency: 10, inFlight: 0, keys }],
      }),
    );
    assert.deepEqual(d, { admissions: [], nextWakeAtMs: NOW + 5000 });
  });

  it('wakes when a retry backoff ends', () => {
    const tasks = [task('t1', 'u1', { running: true })];
    assert.deepEqual(decide(input({ tasks, jobs: [job('j', 't1', 'u1', { readyAtMs: NOW + 700 })] })), {
      admissions: [],
      nextWakeAtMs: NOW + 700,
    });
  });
});

describe('decide(): deadlines', () => {
  it('does not start a task whose predicted start is after its deadline', () => {
    const jobs = [job('late', 't1', 'u1'), job('ok', 't2', 'u2')];
    const tasks = [
      task('t1', 'u1', { deadlineAtMs: NOW + 100 }),
      task('t2', 'u2', { deadlineAtMs: NOW + 300 }),
    ];
    assert.deepEqual(ids(decide(input({ tasks, jobs, dispatchMs: 200 }))), ['ok']);
    assert.deepEqual(ids(decide(input({ tasks, jobs }))).sort(), ['late', 'ok']);
    assert.equal(cannotMeetDeadline({ running: false, deadlineAtMs: NOW }, NOW, 0), false);
    assert.equal(cannotMeetDeadline({ running: false, deadlineAtMs: NOW - 1 }, NOW, 0), true);
  });

  it('keeps feeding a task that started before its deadline', () => {
    const tasks = [task('t1', 'u1', { running: true, deadlineAtMs: NOW - 10_000 })];
    assert.deepEqual(ids(decide(input({ tasks, jobs: [job('j', 't1', 'u1')] }))), ['j']);
  });

  it('an expired task does not rank its user', () => {
    // u1's expired task is older and would otherwise give u1 the aging lead over u2
    const tasks = [
      task('old', 'u1', { createdAtMs: 0, deadlineAtMs: 1 }),
      task('t2', 'u2', { createdAtMs: NOW - 1000 }),
      task('t3', 'u1', { createdAtMs: NOW - 500 }),
    ];
    const jobs = [
      job('x', 'old', 'u1', { readyAtMs: 0 }),
      job('y', 't2', 'u2', { readyAtMs: NOW - 1000 }),
      job('z', 't3', 'u1', { readyAtMs: NOW - 500 }),
    ];
    const d = decide(input({ tasks, jobs, workerSlotsFree: 1 }));
    assert.deepEqual(ids(d), ['y']);
  });
});

describe('decide(): fairness', () => {
  it('gives the next slot to the user with the fewest jobs in flight per weight', () => {
    const tasks = [
      task('t1', 'u1', { running: true, weight: 5 }),
      task('t2', 'u2', { running: true, weight: 1 }),
    ];
    const jobs = [
      ...Array.from({ length: 9 }, (_, i) => job(`a${i}`, 't1', 'u1', { order: i })),
      ...Array.from({ length: 9 }, (_, i) => job(`b${i}`, 't2', 'u2', { order: i })),
    ];
    const d = decide(input({ tasks, jobs, workerSlotsFree: 6, userInFlight: {} }));
    const byUser = d.admissions.reduce(
      (m, a) => m.set(a.taskId, (m.get(a.taskId) ?? 0) + 1),
      new Map<string, number>(),
    );
    assert.deepEqual([byUser.get('t1'), byUser.get('t2')], [5, 1]);
  });

  it('short-work preference: a 2-image task outranks a 70-image one of equal weight', () => {
    const f = { agingSeconds: 60, shortWorkPreference: 0.5, maxUnits: 70 };
    assert.ok(effectiveWeight(1, 2, f) > effectiveWeight(1, 70, f));
    assert.ok(Math.abs(effectiveWeight(1, 2, f) - Math.sqrt(35)) < 1e-9);
    assert.equal(effectiveWeight(3, 70, f), 3);
    const tasks = [
      task('pro', 'u1', { running: true, remainingUnits: 70 }),
      task('free', 'u2', { remainingUnits: 2, createdAtMs: NOW }),
    ];
    const jobs = [job('p', 'pro', 'u1', { readyAtMs: NOW }), job('f', 'free', 'u2', { readyAtMs: NOW })];
    assert.deepEqual(ids(decide(input({ tasks, jobs, workerSlotsFree: 1, fairness: f }))), ['f']);
  });

  it('aging: waiting lowers the score only while nothing is in flight, counted from the last service', () => {
    const f = { agingSeconds: 60, shortWorkPreference: 0, maxUnits: 70 };
    assert.equal(userScore(0, 1, 10, 30_000, f), 0.5);
    assert.equal(userScore(2, 1, 10, 30_000, f), 3);
    // u1 has waited since 0 but was served 1 s ago; u2 waited 10 s: u2 goes first
    const tasks = [task('t1', 'u1', { running: true }), task('t2', 'u2', { running: true })];
    const jobs = [job('a', 't1', 'u1', { readyAtMs: 0 }), job('b', 't2', 'u2', { readyAtMs: NOW - 10_000 })];
    const d = decide(
      input({ tasks, jobs, workerSlotsFree: 1, fairness: f, userLastServedAtMs: { u1: NOW - 1000 } }),
    );
    assert.deepEqual(ids(d), ['b']);
    // without the memory, u1's oldest job counts from 0 and wins
    assert.deepEqual(ids(decide(input({ tasks, jobs, workerSlotsFree: 1, fairness: f }))), ['a']);
  });

  it('inside a user: running tasks first, then by creation, then job order', () => {
    const tasks = [
      task('new', 'u1', { createdAtMs: 10 }),
      task('run', 'u1', { running: true, createdAtMs: 20 }),
      task('old', 'u1', { createdAtMs: 5 }),
    ];
    const jobs = [
      job('n', 'new', 'u1'),
      job('r2', 'run', 'u1', { order: 2 }),
      job('r1', 'run', 'u1', { order: 1 }),
      job('o', 'old', 'u1'),
    ];
    assert.deepEqual(
      ids(decide(input({ tasks, jobs, limits: { maxRunningTasks: 10, perUserRunningTasks: 10 } }))),
      ['r1', 'r2', 'o', 'n'],
    );
  });
});

describe('decide(): determinism', () => {
  it('does not depend on the order of its input lists', () => {
    const tasks = [task('t1', 'u1', { running: true }), task('t2', 'u2'), task('t3', 'u3', { weight: 2 })];
    const jobs = [
      job('a', 't1', 'u1'),
      job('b', 't2', 'u2'),
      job('c', 't3', 'u3'),
      job('d', 't1', 'u1', { order: 1 }),
    ];
    const base = decide(input({ tasks, jobs, workerSlotsFree: 3 }));
    const shuffled = decide(
      input({
        tasks: [...tasks].reverse(),
        jobs: [jobs[2]!, jobs[0]!, jobs[3]!, jobs[1]!],
        workerSlotsFree: 3,
      }),
    );
    assert.deepEqual(shuffled, base);
  });
});
