/**
 * A call's answer and its recorded outcome are two moments, as in the server: the provider's slot
 * frees at the answer (store/jobs.ts markProviderDone wakes the scheduler), but the job counts
 * for its user and holds its worker slot until the outcome's transaction (readCapacity's `n`
 * counts jobs `admitted` or `running`), and the task's next jobs exist only from then on. So the
 * pass at an answer sees the answering user still in flight: the freed slot goes to someone else,
 * even to a user with more work left. Schedules below are derived by hand from policy/admission.ts
 * (score = (inFlight + 1) / w' with nothing to age while in flight, 1 / w' − waited / 60 s
 * otherwise; w' = (maxUnits / images left)^0.5).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Simulation } from '../../src/sim/engine.ts';
import type { PolicyInput } from '../../src/policy/types.ts';
import { config, scenario } from './helpers.ts';

// One provider slot; a task is one beautify call, then one generate call of all its images,
// then one store job. Small: 2 images; big: 4 (maxUnits 4, so small's w' = √2).
const c = config({
  plans: { small: { images: 2, credits: 0 }, big: { images: 4, credits: 0 } },
  providers: {
    api: {
      type: 'openai',
      concurrency: 1,
      maxImagesPerRequest: 4,
      keys: [{ id: 'k', rpm: 600, concurrency: 1 }],
    },
  },
  pipelines: {
    photography: {
      steps: [
        { name: 'beautify', provider: 'api', calls: 1 },
        { name: 'generate', provider: 'api', batchSize: 4 },
        { name: 'store', concurrency: 10 },
      ],
    },
  },
  worker: { concurrency: 8 },
});

const SMALL = 'g0b-00000';

function run(recordMs: number) {
  const starts: string[] = [];
  const inputs = new Map<number, PolicyInput>();
  const sim = new Simulation(
    c,
    scenario({
      arrivals: [{ burst: { users: 1, plan: 'small' } }, { burst: { users: 1, plan: 'big' } }],
      latency: { beautify: 1000, generate: 1000, store: 100 },
      recordMs,
    }),
    {
      onDecision: (input, decision) => {
        inputs.set(input.nowMs, input);
        for (const a of decision.admissions) {
          if (a.resource !== 'api') continue;
          const user = input.jobs.find((j) => j.id === a.jobId)!.userId;
          starts.push(`${input.nowMs} ${user === SMALL ? 'small' : 'big'} ${a.jobId.split('.')[1]}`);
        }
      },
    },
  );
  const result = sim.run();
  const finished = Object.fromEntries(
    result.tasks.map((t) => [t.userId === SMALL ? 'small' : 'big', t.finishedMs]),
  );
  return { starts, finished, inputs };
}

describe('a call counts for its user until its outcome is recorded', () => {
  it('the slot an answer frees goes to the other user while the answer is being recorded', () => {
    // 0: small (0.707) before big (1). 1000: small's beautify answers but is recorded until
    // 1100 (small 2/√2 = 1.41), big has waited 1 s (1 − 1/60 = 0.983): big's beautify.
    // 1100: small's generate is queued. 2000: big's answer (big 2/1), small 1/√2 − 0.9/60: small's
    // generate, answered 3000, stored 3100–3200. 2100: big's generate queued; 3000: it starts,
    // answered 4000, stored 4100–4200.
    const { starts, finished } = run(100);
    assert.deepEqual(starts, ['0 small 0', '1000 big 0', '2000 small 1', '3000 big 1']);
    assert.deepEqual(finished, { small: 3200, big: 4200 });
  });

  it('with the outcome at the answer (recordMs 0), the answering user takes its own slot back', () => {
    // 1000: small's beautify answers and its generate is queued at once: small has nothing in
    // flight (1/√2 − 0 = 0.707 < big's 0.983) and starts it; its store ends 2100. Big: 2000, 3000.
    const { starts, finished } = run(0);
    assert.deepEqual(starts, ['0 small 0', '1000 small 1', '2000 big 0', '3000 big 1']);
    assert.deepEqual(finished, { small: 2100, big: 4100 });
  });

  it("decide() at the answer sees the call's user and worker slot taken, its provider slot free", () => {
    const { inputs } = run(100);
    const atAnswer = inputs.get(1000)!;
    assert.equal(atAnswer.userInFlight[SMALL], 1);
    assert.equal(atAnswer.workerSlotsFree, 8 - 1);
    assert.equal(atAnswer.providers[0]!.inFlight, 0);
    assert.equal(atAnswer.providers[0]!.keys[0]!.inFlight, 0);
    // Its next step's jobs do not exist yet: small has nothing queued.
    assert.equal(atAnswer.jobs.filter((j) => j.userId === SMALL).length, 0);
    const atOutcome = inputs.get(1100)!;
    assert.equal(atOutcome.userInFlight[SMALL], undefined);
    // Big's beautify took the slot at the answer.
    assert.equal(atOutcome.userInFlight['g1b-00000'], 1);
    assert.deepEqual(
      atOutcome.jobs.filter((j) => j.userId === SMALL).map((j) => j.kind),
      ['generate'],
    );
  });
});
