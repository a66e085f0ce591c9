import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { resolveConfig } from '../../src/config/load.ts';
import { effectiveWeight } from '../../src/policy/admission.ts';
import type { PolicyInput } from '../../src/policy/types.ts';
import { simulate } from '../../src/sim/engine.ts';
import { parseScenario, type ScenarioInput } from '../../src/sim/scenario.ts';

/** One provider, generate-only tasks (one call per image), nothing else limiting. */
function oneResource(opts: {
  concurrency: number;
  plans: Record<string, { images: number; weight: number }>;
  agingSeconds?: number;
  shortWorkPreference?: number;
}) {
  return resolveConfig(
    {
      limits: { maxRunningTasks: 10_000, perUserRunningTasks: 10_000, maxQueuedTasks: 100_000 },
      scheduler: {
        agingSeconds: opts.agingSeconds ?? 60,
        shortWorkPreference: opts.shortWorkPreference ?? 0,
      },
      worker: { concurrency: opts.concurrency },
      plans: Object.fromEntries(Object.entries(opts.plans).map(([k, v]) => [k, { ...v, credits: v.images }])),
      providers: {
        api: {
          type: 'sim',
          concurrency: opts.concurrency,
          keys: [{ id: 'k', rpm: 1_000_000, concurrency: opts.concurrency }],
        },
      },
      // A store step is required; this one never limits anything (0 ms, see the scenarios).
      pipelines: {
        gen: {
          steps: [
            { name: 'generate', provider: 'api', batchSize: 1 },
            { name: 'store', concurrency: 100_000 },
          ],
        },
      },
    },
    {},
    'test',
  );
}

function readyUsers(input: PolicyInput): Set<string> {
  return new Set(
    input.jobs.filter((j) => j.readyAtMs <= input.nowMs && j.resource === 'api').map((j) => j.userId),
  );
}

describe('weighted fair share', () => {
  it('weights 5:3:1 give shares of 5:3:1 while all three users are backlogged', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 10_000 }),
        fc.integer({ min: 500, max: 3000 }),
        (m, seed, meanMs) => {
          const config = oneResource({
            concurrency: 9 * m,
            plans: {
              pro: { images: 200 * m, weight: 5 },
              start: { images: 200 * m, weight: 3 },
              free: { images: 200 * m, weight: 1 },
            },
          });
          const scenario = parseScenario({
            seed,
            type: 'gen',
            arrivals: [
              { burst: { users: 1, plan: 'pro' } },
              { burst: { users: 1, plan: 'start' } },
              { burst: { users: 1, plan: 'free' } },
            ],
            latency: { generate: { dist: 'uniform', minMs: meanMs * 0.5, maxMs: meanMs * 1.5 }, store: 0 },
          } satisfies ScenarioInput);
          const admitted = new Map<string, number>();
          simulate(config, scenario, {
            onDecision(input, decision) {
              if (readyUsers(input).size < 3) return;
              const planOf = new Map(input.tasks.map((t) => [t.id, t.weight]));
              for (const a of decision.admissions) {
                if (a.resource !== 'api') continue;
                const w = String(planOf.get(a.taskId));
                admitted.set(w, (admitted.get(w) ?? 0) + 1);
              }
            },
          });
          const total = [...admitted.values()].reduce((a, b) => a + b, 0);
          assert.ok(total > 100, `enough admissions while all are backlogged (${total})`);
          for (const [w, expected] of [
            ['5', 5 / 9],
            ['3', 3 / 9],
            ['1', 1 / 9],
          ] as const) {
            const share = (admitted.get(w) ?? 0) / total;
            assert.ok(
              Math.abs(share - expected) < 0.03,
              `weight ${w}: share ${share.toFixed(3)}, expected ${expected.toFixed(3)}`,
            );
          }
        },
      ),
      { numRuns: 6, seed: 3 },
    );
  });
});

describe('no starvation', () => {
  it('a waiting user is admitted within agingSeconds / weight plus one slot per competing user, and nobody overtakes it twice', () => {
    fc.assert(
      fc.property(
        fc.record({
          concurrency: fc.integer({ min: 1, max: 4 }),
          agingSeconds: fc.integer({ min: 2, max: 60 }),
          shortWorkPreference: fc.double({ min: 0, max: 1, noNaN: true }),
          big: fc.record({
            images: fc.integer({ min: 10, max: 40 }),
            weight: fc.integer({ min: 1, max: 5 }),
          }),
          small: fc.record({
            images: fc.integer({ min: 1, max: 3 }),
            weight: fc.integer({ min: 1, max: 5 }),
          }),
          bigUsers: fc.integer({ min: 1, max: 4 }),
          smallPerMinute: fc.integer({ min: 5, max: 60 }),
          maxMs: fc.integer({ min: 500, max: 4000 }),
          seed: fc.integer({ min: 0, max: 100_000 }),
        }),
        (g) => {
          const config = oneResource({
            concurrency: g.concurrency,
            agingSeconds: g.agingSeconds,
            shortWorkPreference: g.shortWorkPreference,
            plans: { big: g.big, small: g.small },
          });
          // A steady stream of small tasks that, by weight and short-work preference, would
          // always outrank the big ones under strict priorities.
          const scenario = parseScenario({
            seed: g.seed,
            type: 'gen',
            arrivals: [
              { burst: { users: g.bigUsers, plan: 'big' } },
              { poisson: { perMinute: g.smallPerMinute, forSeconds: 240, plan: 'small' } },
            ],
            latency: { generate: { dist: 'uniform', minMs: 100, maxMs: g.maxMs }, store: 0 },
          });
          const users = new Set<string>();
          const weightOf = new Map<string, number>();
          // Per waiting user: the anchor of its current waiting episode and who overtook it since its threshold.
          const overtakers = new Map<string, { anchor: number; seen: Map<string, number> }>();
          const problems: string[] = [];
          const run = simulate(config, scenario, {
            onDecision(input, decision) {
              const now = input.nowMs;
              const ready = new Map<string, number>();
              for (const j of input.jobs) {
                users.add(j.userId);
                if (j.readyAtMs <= now && j.resource === 'api')
                  ready.set(j.userId, Math.min(ready.get(j.userId) ?? j.readyAtMs, j.readyAtMs));
              }
              const taskOf = new Map(input.tasks.map((t) => [t.id, t]));
              const admittedUsers = decision.admissions
                .filter((a) => a.resource === 'api')
                .map((a) => taskOf.get(a.taskId)!.userId);
              for (const [user, oldest] of ready) {
                if ((input.userInFlight[user] ?? 0) > 0) continue;
                const anchor = Math.max(oldest, input.userLastServedAtMs?.[user] ?? -Infinity);
                const head = input.tasks
                  .filter((t) => t.userId === user)
                  .sort((a, b) => a.createdAtMs - b.createdAtMs)[0]!;
                weightOf.set(user, head.weight);
                const threshold =
                  anchor +
                  (g.agingSeconds * 1000) / effectiveWeight(head.weight, head.remainingUnits, input.fairness);
                if (admittedUsers.includes(user)) {
                  const waited = now - anchor;
                  const bound =
                    (g.agingSeconds * 1000) / head.weight +
                    (Math.ceil(users.size / g.concurrency) + 1) * g.maxMs;
                  if (waited > bound) problems.push(`${user} waited ${waited} ms > bound ${bound} ms`);
                  overtakers.delete(user);
                  continue;
                }
                if (now < threshold) continue;
                let episode = overtakers.get(user);
                // Served meanwhile (e.g. a store job): a new waiting episode starts.
                if (!episode || episode.anchor !== anchor)
                  overtakers.set(user, (episode = { anchor, seen: new Map() }));
                for (const other of admittedUsers) {
                  const n = (episode.seen.get(other) ?? 0) + 1;
                  episode.seen.set(other, n);
                  if (n > 1)
                    problems.push(
                      `t=${now}: ${other} admitted twice while ${user} waited past its aging threshold`,
                    );
                }
              }
            },
          });
          assert.deepEqual(problems, []);
          assert.equal(run.tasks.filter((t) => t.state !== 'succeeded').length, 0);
        },
      ),
      { numRuns: 15, seed: 11 },
    );
  });
});

describe('a Free task behind ten Pro tasks', () => {
  const relay = (weights: [number, number], shortWorkPreference: number) =>
    resolveConfig(
      {
        plans: {
          free: { images: 2, credits: 2, weight: weights[0] },
          pro: { images: 70, credits: 70, weight: weights[1] },
        },
        scheduler: { shortWorkPreference },
        providers: {
          // A relay that returns a whole batch of 5 from one request.
          relay: {
            type: 'openai',
            concurrency: 5,
            maxImagesPerRequest: 5,
            keys: [{ id: 'a', rpm: 600, concurrency: 20 }],
          },
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
      },
      {},
      'test',
    );
  const scenario = (atSeconds: number, seed: number, fixed: boolean) =>
    parseScenario({
      seed,
      arrivals: [{ burst: { users: 10, plan: 'pro' } }, { burst: { users: 1, plan: 'free', atSeconds } }],
      latency: fixed
        ? { beautify: 8000, generate: 8000, store: 2000 }
        : {
            beautify: { dist: 'normal', meanMs: 8000, sdMs: 800 },
            generate: { dist: 'normal', meanMs: 8000, sdMs: 800 },
            store: { dist: 'normal', meanMs: 2000, sdMs: 200 },
          },
    });
  const freeCompletion = (run: ReturnType<typeof simulate>) => {
    const free = run.tasks.find((t) => t.plan === 'free')!;
    return (free.finishedMs! - free.submittedMs) / 1000;
  };
  // Its own service time: beautify 8 s + one batch 8 s + storing 2 s.
  const own = 18;
  const batch = 8;

  it('finishes within its own service time plus one batch (fixed latencies, any arrival time)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 220 }), (at) => {
        const run = simulate(relay([1, 1], 0.5), scenario(at, 1, true));
        assert.ok(
          freeCompletion(run) <= own + batch,
          `arrived at ${at}s, finished after ${freeCompletion(run)}s`,
        );
      }),
      { numRuns: 20, seed: 5 },
    );
  });

  it('finishes in about its own service time plus one batch with random latencies, and the Pro tasks barely notice', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 220 }), fc.integer({ min: 0, max: 1000 }), (at, seed) => {
        const run = simulate(relay([1, 1], 0.5), scenario(at, seed, false));
        assert.ok(
          freeCompletion(run) <= (own + batch) * 1.1,
          `arrived at ${at}s, finished after ${freeCompletion(run)}s`,
        );
        const alone = simulate(
          relay([1, 1], 0.5),
          parseScenario({ ...scenario(at, seed, false), arrivals: [{ burst: { users: 10, plan: 'pro' } }] }),
        );
        const makespan = (r: typeof run) =>
          Math.max(...r.tasks.filter((t) => t.plan === 'pro').map((t) => t.finishedMs!));
        assert.ok(
          makespan(run) - makespan(alone) <= 2 * batch * 1000,
          'the Pro tasks lose at most the Free task’s own share',
        );
      }),
      { numRuns: 12, seed: 9 },
    );
  });

  it('with 5:3:1 weights needs a strong short-work preference, and then still finishes in about two batches more', () => {
    const times = [0, 37, 74, 111, 148, 185].map((at) =>
      freeCompletion(simulate(relay([1, 5], 1), scenario(at, 1, false))),
    );
    for (const t of times) assert.ok(t <= own + 3 * batch, `finished after ${t}s`);
  });
});
