import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Config } from '../../src/config/load.ts';
import { Simulation } from '../../src/sim/engine.ts';
import {
  durationsFor,
  forecast,
  type Durations,
  type Forecast,
  type ForecastState,
  type ForecastTask,
} from '../../src/sim/forecast.ts';
import type { SimSeed } from '../../src/sim/seed.ts';
import { config, scenario } from './helpers.ts';

/**
 * The forecast behind queue positions and ETAs: the live state, seeded into the planner's engine
 * and run forward with the real decide() (src/sim/forecast.ts).
 */

const T0 = Date.UTC(2026, 0, 1, 12);

/** Durations fixed at these means (no spread), no dispatch delay. */
function fixed(c: Config, ms: Record<string, number>): Durations {
  const measured = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, { meanMs: v, sdMs: 0 }]));
  return durationsFor(c, measured, 0);
}

function queuedTask(
  id: string,
  userId: string,
  plan: string,
  images: number,
  createdAtMs: number,
  type = 'gen',
): ForecastTask {
  return {
    id,
    userId,
    plan,
    type,
    weight: 1,
    imagesTotal: images,
    done: 0,
    failed: 0,
    createdAtMs,
    state: 'queued',
  };
}

function state(tasks: ForecastTask[], extra: Partial<ForecastState> = {}): ForecastState {
  return {
    nowMs: T0,
    workerSlots: 16,
    tasks,
    keys: [],
    effectiveConcurrency: {},
    lastServedAtMs: {},
    ...extra,
  };
}

/** A planner run's state as the database would show it at `t0` (epoch ms for sim time 0). */
function stateFromSeed(seed: SimSeed, t0: number): ForecastState {
  return {
    nowMs: t0 + seed.nowMs,
    workerSlots: seed.workerSlots,
    tasks: seed.tasks.map((t) => ({
      ...t,
      createdAtMs: t0 + t.createdAtMs,
      deadlineAtMs: t.deadlineAtMs === undefined ? undefined : t0 + t.deadlineAtMs,
      startedAtMs: t.startedAtMs === undefined ? undefined : t0 + t.startedAtMs,
      queued: t.queued?.map((j) => ({ ...j, readyAtMs: t0 + j.readyAtMs })),
      inFlight: t.inFlight?.map((f) => ({
        stepIndex: f.stepIndex,
        firstIndex: f.firstIndex,
        count: f.count,
        attempts: f.attempts,
        keyId: f.keyId,
        admittedAtMs: t0 + f.startedAtMs,
        startedAtMs: t0 + f.startedAtMs,
      })),
    })),
    keys: seed.keys.map((k) => ({
      ...k,
      startsMs: k.startsMs.map((s) => t0 + s),
      cooldownUntilMs: t0 + k.cooldownUntilMs,
    })),
    effectiveConcurrency: seed.effectiveConcurrency,
    lastServedAtMs: Object.fromEntries(Object.entries(seed.lastServedAtMs).map(([u, s]) => [u, t0 + s])),
  };
}

/** Ids of the tasks a forecast starts, in predicted start order (ties: in the order admitted). */
function startOrder(f: Forecast, ids: string[]): string[] {
  return ids
    .filter((id) => f.get(id)?.startAtMs !== undefined)
    .sort((a, b) => f.get(a)!.startAtMs! - f.get(b)!.startAtMs!);
}

describe('forecast: hand-calculated cases', () => {
  const oneSlotPair = config({
    limits: { maxRunningTasks: 40, perUserRunningTasks: 2 },
    plans: { one: { images: 1, credits: 1 } },
    providers: { p: { type: 'sim', concurrency: 2, keys: [{ id: 'k', rpm: 1000, concurrency: 2 }] } },
    pipelines: {
      gen: {
        steps: [
          { name: 'generate', provider: 'p', batchSize: 1 },
          { name: 'store', concurrency: 10 },
        ],
      },
    },
  });
  const durations = fixed(oneSlotPair, { 'gen.generate': 10_000, 'gen.store': 1000 });

  it('one key of concurrency 2, three one-image tasks, 10 s calls and 1 s stores: 11 s, 11 s, 21 s', () => {
    const tasks = [
      queuedTask('a', 'ua', 'one', 1, T0 - 3000),
      queuedTask('b', 'ub', 'one', 1, T0 - 2000),
      queuedTask('c', 'uc', 'one', 1, T0 - 1000),
    ];
    const f = forecast(oneSlotPair, state(tasks), durations);
    assert.equal(f.complete, true);
    // a and b (waiting longest) take both slots now; c starts when they end at 10 s.
    assert.deepEqual(
      tasks.map((t) => f.etaSeconds(t.id, T0)),
      [11, 11, 21],
    );
    assert.equal(f.get('c')!.startAtMs, T0 + 10_000);
    // a and b start at once: they count as running, and c is next (position 0).
    assert.deepEqual(
      tasks.map((t) => f.position(t.id, T0)),
      [0, 0, 0],
    );
    assert.equal(f.etaSeconds('c', T0 + 5000), 16);
  });

  it('jobs in flight end after their mean duration from when they started', () => {
    const running: ForecastTask = {
      ...queuedTask('a', 'ua', 'one', 1, T0 - 8000),
      state: 'running',
      startedAtMs: T0 - 7000,
      queued: [],
      inFlight: [
        {
          stepIndex: 0,
          firstIndex: 0,
          count: 1,
          attempts: 1,
          keyId: 'k',
          admittedAtMs: T0 - 7000,
          startedAtMs: T0 - 7000,
        },
      ],
    };
    const tasks = [
      running,
      queuedTask('b', 'ub', 'one', 1, T0 - 2000),
      queuedTask('c', 'uc', 'one', 1, T0 - 1000),
    ];
    const f = forecast(oneSlotPair, state(tasks), durations);
    // a's call ends at 3 s, its store at 4 s; b starts now (11 s); c takes a's slot at 3 s (14 s).
    assert.deepEqual(
      tasks.map((t) => f.etaSeconds(t.id, T0)),
      [4, 11, 14],
    );
    assert.deepEqual(
      tasks.map((t) => f.position(t.id, T0)),
      [0, 0, 0],
    );
  });

  it('RPM: a key of 2 per minute that already started 2 calls 50 s and 40 s ago', () => {
    const c = config({
      plans: { one: { images: 1, credits: 1 } },
      providers: { p: { type: 'sim', concurrency: 10, keys: [{ id: 'k', rpm: 2, concurrency: 10 }] } },
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'p', batchSize: 1 },
            { name: 'store', concurrency: 10 },
          ],
        },
      },
    });
    const tasks = [
      queuedTask('a', 'ua', 'one', 1, T0 - 3000),
      queuedTask('b', 'ub', 'one', 1, T0 - 2000),
      queuedTask('c', 'uc', 'one', 1, T0 - 1000),
    ];
    const f = forecast(
      c,
      state(tasks, {
        keys: [{ provider: 'p', id: 'k', startsMs: [T0 - 50_000, T0 - 40_000], cooldownUntilMs: 0 }],
      }),
      fixed(c, { 'gen.generate': 1000, 'gen.store': 1000 }),
    );
    // The window is 61 s (60 s + 1 s margin): a at 11 s, b at 21 s, c when a's start leaves it (72 s).
    assert.deepEqual(
      tasks.map((t) => f.get(t.id)!.startAtMs! - T0),
      [11_000, 21_000, 72_000],
    );
    assert.deepEqual(
      tasks.map((t) => f.etaSeconds(t.id, T0)),
      [13, 23, 74],
    );
    assert.deepEqual(
      tasks.map((t) => f.position(t.id, T0)),
      [0, 1, 2],
    );
  });

  it('a queued task that cannot start before its deadline ends then, canceled, and starts nothing', () => {
    const tasks = [
      queuedTask('a', 'ua', 'one', 1, T0 - 3000),
      queuedTask('b', 'ub', 'one', 1, T0 - 2000),
      { ...queuedTask('c', 'uc', 'one', 1, T0 - 1000), deadlineAtMs: T0 + 5000 },
      queuedTask('d', 'ud', 'one', 1, T0 - 500),
    ];
    const f = forecast(oneSlotPair, state(tasks), durations);
    assert.equal(f.get('c')!.startAtMs, undefined);
    assert.equal(f.etaSeconds('c', T0), 5);
    // d takes the slot c would have had.
    assert.equal(f.get('d')!.startAtMs, T0 + 10_000);
    assert.equal(f.position('d', T0), 0);
  });

  it('a key cooling down after a 429 starts nothing until the cool-down ends', () => {
    const tasks = [queuedTask('a', 'ua', 'one', 1, T0 - 1000)];
    const f = forecast(
      oneSlotPair,
      state(tasks, { keys: [{ provider: 'p', id: 'k', startsMs: [], cooldownUntilMs: T0 + 5000 }] }),
      durations,
    );
    assert.equal(f.get('a')!.startAtMs, T0 + 5000);
    assert.equal(f.etaSeconds('a', T0), 16);
  });
});

describe('forecast: fair share, as the scheduler decides it', () => {
  // The relay of document 02 (scenarios/config-relay.yaml) with a simulated provider.
  const relay = (maxRunningTasks: number) =>
    config({
      limits: { maxRunningTasks, perUserRunningTasks: 2 },
      plans: {
        free: { images: 2, credits: 2, weight: 1 },
        pro: { images: 70, credits: 70, weight: 1 },
      },
      scheduler: { shortWorkPreference: 0.5 },
      providers: {
        relay: { type: 'sim', concurrency: 5, keys: [{ id: 'apicore', rpm: 600, concurrency: 20 }] },
      },
      pipelines: {
        photography: {
          steps: [
            { name: 'beautify', provider: 'relay', calls: 1 },
            { name: 'generate', provider: 'relay', batchSize: 5 },
            { name: 'store', concurrency: 10 },
          ],
        },
      },
      worker: { concurrency: 16 },
    });
  const latency = { beautify: 8000, generate: 8000, store: 2000 };
  const durationsOf = (c: Config) =>
    fixed(c, { 'photography.beautify': 8000, 'photography.generate': 8000, 'photography.store': 2000 });

  /** Ten Pro tasks at t = 0, run by the planner to t = 20 s: the state a Free task is submitted into. */
  function tenProAt20s(c: Config): ForecastState {
    const sim = new Simulation(
      c,
      scenario({ type: 'photography', arrivals: [{ burst: { users: 10, plan: 'pro' } }], latency }),
      { stopAtMs: 20_000 },
    );
    sim.run();
    assert.equal(sim.now, 20_000);
    return stateFromSeed(sim.toSeed(), T0 - 20_000);
  }

  it('a Free task submitted behind ten running Pro tasks finishes in about its own service time plus one batch', () => {
    const c = relay(40);
    const s = tenProAt20s(c);
    assert.equal(s.tasks.filter((t) => t.state === 'running').length, 10);
    s.tasks.push(queuedTask('free', 'late', 'free', 2, T0, 'photography'));
    const f = forecast(c, s, durationsOf(c));
    // Own service time: beautify 8 s + one batch 8 s + storing 2 s = 18 s; plus at most one batch.
    const eta = f.etaSeconds('free', T0)!;
    assert.ok(eta >= 18 && eta <= 18 + 8, `free ETA ${eta} s`);
    assert.equal(f.position('free', T0), 0);
    for (let i = 1; i <= 10; i++) {
      const pro = `t${String(i).padStart(6, '0')}`;
      assert.ok(
        f.get(pro)!.finishAtMs > f.get('free')!.finishAtMs + 60_000,
        `${pro} ends long after the Free task`,
      );
    }
  });

  it('puts the Free task ahead of the Pro tasks queued before it (4 task slots), as the planner runs it', () => {
    const c = relay(4);
    const s = tenProAt20s(c);
    const queuedPro = s.tasks.filter((t) => t.state === 'queued').map((t) => t.id);
    assert.equal(queuedPro.length, 6);
    s.tasks.push(queuedTask('free', 'late', 'free', 2, T0, 'photography'));
    const f = forecast(c, s, durationsOf(c));
    assert.equal(f.position('free', T0), 0, 'no queued task starts before the Free task');
    for (const id of queuedPro) {
      assert.ok(f.get(id)!.startAtMs! > f.get('free')!.startAtMs!, `${id} starts after the Free task`);
      assert.ok(f.position(id, T0) >= 1);
    }
    // First come, first served would have put it behind all six; it ends before any of them.
    assert.ok(f.get('free')!.finishAtMs < Math.min(...queuedPro.map((id) => f.get(id)!.finishAtMs)));

    // The planner running the same thing from t = 0 (the Free task arriving at 20 s) agrees exactly.
    const run = new Simulation(
      c,
      scenario({
        type: 'photography',
        arrivals: [
          { burst: { users: 10, plan: 'pro' } },
          { burst: { users: 1, plan: 'free', atSeconds: 20 } },
        ],
        latency,
      }),
    ).run();
    const free = run.tasks.find((t) => t.plan === 'free')!;
    assert.equal(f.get('free')!.startAtMs, T0 - 20_000 + free.startedMs!);
    assert.equal(f.get('free')!.finishAtMs, T0 - 20_000 + free.finishedMs!);
  });
});

describe('forecast: consistent with the run it continues', () => {
  const c = config({
    limits: { maxRunningTasks: 6, perUserRunningTasks: 2 },
    plans: {
      free: { images: 2, credits: 2, weight: 1 },
      start: { images: 30, credits: 30, weight: 3 },
      pro: { images: 70, credits: 70, weight: 5 },
    },
    scheduler: { shortWorkPreference: 0.5, agingSeconds: 30 },
    providers: {
      relay: {
        type: 'sim',
        concurrency: 6,
        keys: [
          { id: 'a', rpm: 40, concurrency: 4 },
          { id: 'b', rpm: 30, concurrency: 4 },
        ],
      },
    },
    pipelines: {
      photography: {
        steps: [
          { name: 'beautify', provider: 'relay', calls: 1 },
          { name: 'generate', provider: 'relay', batchSize: 5 },
          { name: 'store', concurrency: 4 },
        ],
      },
    },
    worker: { concurrency: 12 },
  });
  const latency = { beautify: 3000, generate: 7000, store: 1500 };
  const durations = fixed(c, {
    'photography.beautify': 3000,
    'photography.generate': 7000,
    'photography.store': 1500,
  });
  const mixed = (seed: number) =>
    scenario({
      seed,
      type: 'photography',
      plans: { free: 3, start: 4, pro: 3 },
      arrivals: [
        { burst: { users: 8, tasksPerUser: 2 } },
        { poisson: { perMinute: 20, forSeconds: 60, startSeconds: 5 } },
      ],
      latency,
    });

  for (const [seed, atMs] of [
    [1, 30_000],
    [2, 75_000],
    [3, 140_000],
  ] as const) {
    it(`predicts every start and finish of a mixed run from its state at ${atMs / 1000} s, and positions follow the starts (seed ${seed})`, () => {
      const whole = new Simulation(c, mixed(seed)).run();
      const stopped = new Simulation(c, mixed(seed), { stopAtMs: atMs });
      stopped.run();
      const seedState = stopped.toSeed();
      const s = stateFromSeed(seedState, T0 - seedState.nowMs);
      const f = forecast(c, s, durations);
      assert.equal(f.complete, true);
      const open = s.tasks.map((t) => t.id);
      assert.ok(open.length >= 5, `${open.length} open tasks`);
      // The run also has the arrivals after the state was taken, which the forecast cannot know;
      // they change nothing before the first of them starts: compare what ends before that.
      const later = whole.tasks.filter((t) => t.submittedMs > seedState.nowMs);
      const firstLaterStart = Math.min(...later.map((t) => t.startedMs ?? Number.POSITIVE_INFINITY));
      let compared = 0;
      for (const r of whole.tasks.filter((t) => open.includes(t.id))) {
        const predicted = f.get(r.id)!;
        if (r.startedMs! >= seedState.nowMs && r.startedMs! < firstLaterStart)
          assert.equal(predicted.startAtMs! - T0, r.startedMs! - seedState.nowMs, `start of ${r.id}`);
        if (r.finishedMs! >= firstLaterStart) continue;
        assert.equal(predicted.finishAtMs - T0, r.finishedMs! - seedState.nowMs, `finish of ${r.id}`);
        compared++;
      }
      assert.ok(compared >= 3, `${compared} tasks compared`);
      const queued = s.tasks.filter((t) => t.state === 'queued').map((t) => t.id);
      const order = startOrder(f, queued);
      assert.equal(order.length, queued.length, 'every queued task starts');
      for (const id of queued) {
        const start = f.get(id)!.startAtMs!;
        const ahead = queued.filter((o) => f.get(o)!.startAtMs! > T0 && f.get(o)!.startAtMs! < start).length;
        assert.equal(f.position(id, T0), start <= T0 ? 0 : ahead, `position of ${id}`);
      }
    });
  }

  it('a bounded run gives the tasks it did not finish first-come-first-served ETAs after its horizon', () => {
    const stopped = new Simulation(c, mixed(4), { stopAtMs: 30_000 });
    stopped.run();
    const seedState = stopped.toSeed();
    const s = stateFromSeed(seedState, T0 - seedState.nowMs);
    const full = forecast(c, s, durations);
    const bounded = forecast(c, s, durations, { maxSteps: 20 });
    assert.equal(bounded.complete, false);
    assert.ok(bounded.horizonMs > T0 && bounded.horizonMs < T0 + 600_000);
    const ids = s.tasks.map((t) => t.id);
    const beyond = ids.filter((id) => !bounded.get(id)!.simulated);
    assert.ok(beyond.length > 0);
    for (const id of ids) {
      const b = bounded.get(id)!;
      if (b.simulated)
        assert.equal(b.finishAtMs, full.get(id)!.finishAtMs, `${id} finished inside the horizon`);
      else assert.ok(b.finishAtMs > bounded.horizonMs, `${id} ends after the horizon`);
    }
    // Positions stay a ranking: started tasks first, then the rest in creation order.
    const queued = s.tasks.filter((t) => t.state === 'queued');
    const positions = queued.map((t) => bounded.position(t.id, T0));
    const unstarted = queued.filter((t) => bounded.get(t.id)!.startAtMs === undefined);
    const startedCount = queued.filter((t) => (bounded.get(t.id)!.startAtMs ?? 0) > T0).length;
    unstarted.forEach((t, i) => assert.equal(bounded.position(t.id, T0), startedCount + i));
    assert.equal(new Set(positions.filter((p) => p >= startedCount)).size, unstarted.length);
  });
});
