/**
 * The time a provider's freed slot stays idle (a call's answer → the next waiting call's start),
 * read from the jobs table, and the forecast's dispatch delay taken from it. Expected values are
 * worked out by hand from the rows' timestamps.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { readForecastInput } from '../../src/scheduler/forecast-input.ts';
import { slotIdleMs } from '../../src/store/stats.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

describeEachDb('slot idle time', (kind) => {
  const t = useTestDb(kind);

  it('is the median answer → next waiting call start per provider, and the forecast dispatches with it', async () => {
    const db = t.db;
    await db.query(`INSERT INTO users (id, balance) VALUES ('idle-u', 0)`);
    await db.query(
      `INSERT INTO tasks (id, user_id, type, plan, prompt, inputs, params, seed, weight, state, stage, images_total, credits_charged)
       VALUES ('idle-t', 'idle-u', 'photography', 'free', '', '[]', '{}', 1, 1, 'running', 'generate', 12, 0)`,
    );
    // id, resource, state, created, started, answered (provider_done_at), finished: ms after a base.
    const rows: Array<[string, string, string, number, number, number | null, number]> = [
      ['c1', 'main', 'succeeded', 0, 0, 300, 400],
      ['c2', 'main', 'succeeded', 0, 320, 620, 700], // 20 ms after c1's answer
      ['c3', 'main', 'succeeded', 0, 660, 960, 1000], // 40 ms after c2's
      ['c4', 'main', 'succeeded', 0, 1050, 1350, 1400], // 90 ms after c3's; none after it
      // Queued only after c4's answer: no gap of c4's, and none of its own.
      ['c5', 'main', 'succeeded', 5000, 5000, 5300, 5400],
      // A failed call started 5 ms after c2's answer: not a successful call, not counted.
      ['f1', 'main', 'failed', 0, 625, null, 640],
      // Another provider, answered when its outcome was recorded (no provider_done_at).
      ['d1', 'other', 'succeeded', 0, 0, null, 500],
      ['d2', 'other', 'succeeded', 0, 530, null, 800], // 30 ms after d1's end
    ];
    await db.query(
      `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state,
                         max_attempts, created_at, run_after, started_at, provider_done_at, finished_at)
       SELECT x.id, 'idle-t', 'idle-u', 1, 'generate', 'generate', x.resource, x.i, 1, x.state, 3,
              b.t + x.created * interval '1 millisecond', b.t + x.created * interval '1 millisecond',
              b.t + x.started * interval '1 millisecond', b.t + x.answered * interval '1 millisecond',
              b.t + x.finished * interval '1 millisecond'
         FROM (SELECT now() - interval '1 hour' AS t) b,
              unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[], $7::int[])
                WITH ORDINALITY AS x(id, resource, state, created, started, answered, finished, i)`,
      [
        rows.map((r) => r[0]),
        rows.map((r) => r[1]),
        rows.map((r) => r[2]),
        rows.map((r) => r[3]),
        rows.map((r) => r[4]),
        rows.map((r) => r[5]),
        rows.map((r) => r[6]),
      ],
    );

    const idle = await slotIdleMs(db, ['main', 'other', 'none']);
    const by = new Map(idle.map((r) => [r.resource, r]));
    assert.equal(by.get('main')?.samples, 3);
    assert.ok(Math.abs(by.get('main')!.medianMs! - 40) < 1e-6, `main: ${by.get('main')?.medianMs}`);
    assert.equal(by.get('other')?.samples, 1);
    assert.ok(Math.abs(by.get('other')!.medianMs! - 30) < 1e-6, `other: ${by.get('other')?.medianMs}`);
    assert.deepEqual(by.get('none'), { resource: 'none', medianMs: undefined, samples: 0 });

    // The default configuration's pipelines call provider `main` only: its median, and no share
    // of the scheduler's poll on top.
    const input = await readForecastInput(db, testConfig({ scheduler: { pollMs: 500 } }), 100);
    assert.equal(input.durations.dispatchMs, 40);
  });
});
