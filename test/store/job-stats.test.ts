import assert from 'node:assert/strict';
import { it } from 'node:test';
import { JOB_SECONDS_BUCKETS, compactCounters, readCounters } from '../../src/store/counters.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * The jobs counters (migration 0017: one delta row per statement, summed by series) against
 * the jobs table itself, after multi-row statements of every kind the engine runs: inserts of
 * several jobs, an admission pass, a claim, outcomes, a requeue, a lease that ran out, updates
 * that move no state. The truth is recomputed from the rows, not from the triggers' formulas.
 */
describeEachDb('jobs counters per statement', (kind) => {
  const t = useTestDb(kind);

  it('match the jobs table after batches of inserts, admissions, claims and outcomes', async () => {
    const db = t.db;
    await db.query(`INSERT INTO users (id, balance) VALUES ('stats-u', 0)`);
    await db.query(
      `INSERT INTO tasks (id, user_id, type, plan, prompt, inputs, params, seed, weight, state, stage, images_total, credits_charged)
       VALUES ('stats-t', 'stats-u', 'x', 'free', '', '[]', '{}', 1, 1, 'queued', 'generate', 12, 0)`,
    );
    const insert = (ids: number[], resource: string, kind: string) =>
      db.query(
        `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state, max_attempts, created_at, run_after)
         SELECT 'sj' || i, 'stats-t', 'stats-u', 0, 'generate', $2, $3, i, 1, 'queued', 3,
                now() - interval '10 seconds', now() - interval '10 seconds'
           FROM unnest($1::int[]) AS i`,
        [ids, kind, resource],
      );
    await insert([1, 2, 3, 4, 5, 6, 7, 8], 'main', 'generate');
    await insert([9, 10, 11, 12], 'store', 'store');
    // An admission pass of several jobs, then a claim of some of them.
    await db.query(`UPDATE jobs SET state = 'admitted', admitted_at = now() WHERE id = ANY($1::text[])`, [
      ['sj1', 'sj2', 'sj3', 'sj4', 'sj5', 'sj9', 'sj10'],
    ]);
    await db.query(
      `UPDATE jobs SET state = 'running', started_at = created_at + interval '2 seconds', lease_token = lease_token + 1,
                       lease_expires_at = now() + interval '1 minute'
        WHERE id = ANY($1::text[])`,
      [['sj1', 'sj2', 'sj3', 'sj4', 'sj9']],
    );
    // Updates that move no state (a lease renewal) count nothing.
    await db.query(`UPDATE jobs SET lease_expires_at = now() + interval '2 minutes' WHERE state = 'running'`);
    // Outcomes: two succeed in one statement, one fails, one is requeued, one ran out of lease.
    await db.query(
      `UPDATE jobs SET state = 'succeeded', finished_at = started_at + interval '0.3 seconds' WHERE id IN ('sj1', 'sj9')`,
    );
    await db.query(
      `UPDATE jobs SET state = 'failed', finished_at = started_at + interval '3 seconds' WHERE id = 'sj2'`,
    );
    await db.query(`UPDATE jobs SET state = 'queued', admitted_at = NULL WHERE id = 'sj3'`);
    await db.query(`UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = 'sj4'`);
    await db.query(`UPDATE jobs SET state = 'queued', admitted_at = NULL WHERE id = 'sj4'`);
    await db.query(`UPDATE jobs SET state = 'canceled' WHERE id IN ('sj7', 'sj8')`);
    await compactCounters(db);
    await db.query(`UPDATE jobs SET state = 'admitted', admitted_at = now() WHERE id = 'sj3'`);

    const series = await readCounters(db, [
      'jobs_active',
      'jobs_admitted',
      'job_queue_wait_seconds',
      'job_duration_seconds',
      'lease_expiries',
    ]);
    const sum = (name: string, where: (l: Record<string, string>) => boolean = () => true) =>
      series.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.n, 0);

    const active = await db.query<{ state: string; resource: string; n: number }>(
      `SELECT state, resource, count(*)::int AS n FROM jobs
        WHERE task_id = 'stats-t' AND state IN ('queued', 'admitted', 'running') GROUP BY state, resource`,
    );
    for (const r of active.rows)
      assert.equal(
        sum('jobs_active', (l) => l.state === r.state && l.resource === r.resource),
        r.n,
        `${r.state}/${r.resource}`,
      );
    assert.equal(
      sum('jobs_active'),
      active.rows.reduce((a, r) => a + r.n, 0),
    );
    // Admissions: seven in the pass, sj3 again.
    assert.equal(sum('jobs_admitted'), 8);
    assert.equal(
      sum('jobs_admitted', (l) => l.resource === 'store'),
      2,
    );
    // Five claims, each observed once: 2 s after it could run.
    assert.equal(
      sum('job_queue_wait_seconds', (l) => l.le === '2'),
      5,
    );
    assert.equal(sum('job_queue_wait_seconds'), 5);
    // Two successes of 0.3 s and a failure of 3 s, by kind, resource and state.
    assert.equal(
      sum('job_duration_seconds', (l) => l.state === 'succeeded'),
      2,
    );
    assert.equal(
      sum('job_duration_seconds', (l) => l.state === 'succeeded' && l.le === '0.5'),
      2,
    );
    assert.equal(
      sum('job_duration_seconds', (l) => l.state === 'failed' && l.le === '5'),
      1,
    );
    assert.ok(
      series
        .filter((s) => s.name === 'job_duration_seconds')
        .every((s) => s.labels.le === '+Inf' || JOB_SECONDS_BUCKETS.includes(Number(s.labels.le))),
    );
    const durations = series.filter((s) => s.name === 'job_duration_seconds').reduce((a, s) => a + s.v, 0);
    assert.ok(Math.abs(durations - 3.6) < 1e-6, `durations sum ${durations}`);
    assert.equal(sum('lease_expiries'), 1);
  });
});
