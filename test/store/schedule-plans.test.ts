import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Queryable } from '../../src/store/db.ts';
import { readCapacity, readFairOrder, readQueueHead, type HeadLimits } from '../../src/store/schedule.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { rowsTouched, seqScans, type PlanNode } from '../helpers/plan.ts';

/**
 * The scheduler's head read must cost what one pass can admit, not what is queued, even when
 * the tables have no statistics: CI's PostgreSQL runs without autovacuum, and a queue filled in
 * a burst is planned with the defaults. The running tasks' read was planned there as every
 * queued job joined to its task (11 ms a pass at 5,000 queued, 10,000 buffers). Here every
 * statement readQueueHead, readCapacity and readFairOrder send is run again under EXPLAIN
 * ANALYZE on a never-analyzed queue of 3,000 queued tasks, and the rows of `jobs` and `tasks`
 * each plan node reads are counted from what PostgreSQL reports.
 */

const QUEUED = 3000;
const QUEUED_USERS = 20;
const RUNNING = 8;

describeEachDb('the scheduler’s head read without statistics', (kind) => {
  const t = useTestDb(kind);
  let nowMs = 0;

  before(async () => {
    // Running tasks of their own users, each with two queued generate jobs and a done one; the
    // queue: QUEUED tasks that have not started, of QUEUED_USERS users, one ready job each.
    await t.db.query(
      `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, images_total, credits_charged, created_at)
       SELECT 'r' || lpad(i::text, 5, '0'), 'ru' || i, 'photography', 'free', 1, 1, 'running', 4, 0,
              now() - interval '1 minute'
         FROM generate_series(1, $1::int) i
       UNION ALL
       SELECT 'q' || lpad(i::text, 5, '0'), 'qu' || (i % $2::int), 'photography', 'free', 1, 1, 'queued', 2, 0,
              now() - interval '1 minute' + i * interval '1 millisecond'
         FROM generate_series(1, $3::int) i`,
      [RUNNING, QUEUED_USERS, QUEUED],
    );
    await t.db.query(
      `INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state,
                         max_attempts, run_after)
       SELECT id || '-j' || n, id, user_id, CASE WHEN n = 0 THEN 0 ELSE 1 END,
              CASE WHEN n = 0 THEN 'beautify' ELSE 'generate' END,
              CASE WHEN n = 0 THEN 'transform' ELSE 'generate' END, 'main', n, 1,
              CASE WHEN n = 0 THEN 'succeeded' ELSE 'queued' END, 3, now() - interval '1 minute'
         FROM tasks CROSS JOIN generate_series(0, 2) n WHERE state = 'running'
       UNION ALL
       SELECT id || '-j0', id, user_id, 0, 'beautify', 'transform', 'main', 0, 1, 'queued', 3, created_at
         FROM tasks WHERE state = 'queued'`,
    );
    const { rows } = await t.db.query<{ now_ms: number }>(
      `SELECT (extract(epoch FROM now()) * 1000)::float8 AS now_ms`,
    );
    nowMs = rows[0]!.now_ms;
  });

  it('reads rows in proportion to the head, not the queue', async () => {
    const sent: Array<{ sql: string; params: readonly unknown[] | undefined }> = [];
    const recorder: Queryable = {
      query: (sql, params) => {
        sent.push({ sql, params });
        return t.db.query(sql, params);
      },
      exec: (sql) => t.db.exec(sql),
    };
    const limits: HeadLimits = {
      nowMs,
      dispatchMs: 0,
      perResource: [
        { resource: 'main', k: 5 },
        { resource: 'store:photography.store', k: 3 },
      ],
      startsOn: [{ resource: 'main', types: ['photography'] }],
      users: ['qu1', 'qu2'],
    };
    const head = await readQueueHead(recorder, limits);
    // What the read must find: each running task's two queued jobs, and per given user five.
    const running = head.jobs.filter((j) => j.task_id.startsWith('r'));
    assert.equal(running.length, RUNNING * 2);
    assert.deepEqual(
      [...new Set(head.jobs.filter((j) => j.task_id.startsWith('q')).map((j) => j.user_id))].sort(),
      ['qu1', 'qu2'],
    );
    // The pass's other reads: capacity in use, and the users in fair-share order.
    await readCapacity(recorder, { windowMs: 61_000, workerStaleMs: 60_000 });
    const order = await readFairOrder(
      recorder,
      { nowMs, agingSeconds: 60, shortWorkPreference: 0.5, maxUnits: 10 },
      10,
    );
    assert.equal(order.users.length, 10);
    assert.ok(sent.length >= 6, `statements: ${sent.length}`);
    for (const { sql, params } of sent) {
      const { rows } = await t.db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
        `EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`,
        params,
      );
      const plan = rows[0]!['QUERY PLAN'][0]!.Plan;
      const what = sql.replace(/\s+/g, ' ').slice(0, 120);
      // The head: 8 running tasks × 3 jobs, 2 users × 5 tasks and a job each, the tasks of those;
      // the queue: 3,000 tasks and jobs.
      const jobs = rowsTouched(plan, 'jobs');
      assert.ok(jobs <= 150, `${jobs} rows of jobs read by: ${what}`);
      const tasks = rowsTouched(plan, 'tasks');
      assert.ok(tasks <= 150, `${tasks} rows of tasks read by: ${what}`);
      assert.deepEqual(
        seqScans(plan).filter((r) => r === 'jobs' || r === 'tasks'),
        [],
        `sequential scans in: ${what}`,
      );
    }
  });
});
