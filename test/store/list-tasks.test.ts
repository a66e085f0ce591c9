import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Queryable } from '../../src/store/db.ts';
import { listTasks, type ListTasksFilter } from '../../src/store/tasks.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { rowsTouched, type PlanNode } from '../helpers/plan.ts';

/**
 * Task lists (GET /v1/tasks, /v1/admin/tasks): newest first by id, filtered, paged by the last
 * id. Checked against the same list computed here from the rows written, page by page; and the
 * rows a page reads are counted from the plan PostgreSQL reports, on a table whose statistics
 * say it is empty (a queue filled in a burst before autoanalyze ran): the list of queued tasks
 * was planned there as every queued task joined to its forecast and sorted.
 */

const TASKS = 3000;
const STATES = ['queued', 'queued', 'queued', 'running', 'succeeded', 'failed'] as const;

/** Task i: an id that sorts alike in every collation (fixed-width hex), spread over users and states. */
function task(i: number) {
  return {
    id: `t${((i * 7919) % 65536).toString(16).padStart(4, '0')}${i.toString(16).padStart(4, '0')}`,
    user: `u${i % 7}`,
    state: STATES[i % STATES.length]!,
    plan: i % 5 === 0 ? 'pro' : 'free',
  };
}

describeEachDb('task lists', (kind) => {
  const t = useTestDb(kind);
  const all = Array.from({ length: TASKS }, (_, i) => task(i));

  before(async () => {
    await t.db.exec('ANALYZE');
    await t.db.query(
      `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, images_total, credits_charged)
       SELECT x.id, x.user_id, 'photography', x.plan, 1, 1, x.state, 2, 0
         FROM jsonb_to_recordset($1::jsonb) AS x(id text, user_id text, plan text, state text)`,
      [JSON.stringify(all.map((a) => ({ id: a.id, user_id: a.user, plan: a.plan, state: a.state })))],
    );
    await t.db.query(
      `INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
       SELECT id, 1, now(), now(), 'simulated', now() FROM tasks WHERE state IN ('queued', 'running')`,
    );
  });

  it('pages newest first through exactly the matching tasks', async () => {
    const filters: Array<{
      f: Omit<ListTasksFilter, 'limit' | 'cursor'>;
      keep: (a: ReturnType<typeof task>) => boolean;
    }> = [
      { f: {}, keep: () => true },
      { f: { state: 'queued' }, keep: (a) => a.state === 'queued' },
      { f: { userId: 'u3' }, keep: (a) => a.user === 'u3' },
      { f: { userId: 'u3', state: 'running' }, keep: (a) => a.user === 'u3' && a.state === 'running' },
      { f: { plan: 'pro', state: 'queued' }, keep: (a) => a.plan === 'pro' && a.state === 'queued' },
    ];
    for (const { f, keep } of filters) {
      const expected = all
        .filter(keep)
        .map((a) => a.id)
        .sort()
        .reverse();
      const seen: string[] = [];
      let cursor: string | undefined;
      for (;;) {
        const page = await listTasks(t.db, { ...f, limit: 97, cursor });
        assert.ok(page.length <= 97);
        seen.push(...page.map((r) => r.id));
        for (const r of page) {
          const active = r.state === 'queued' || r.state === 'running';
          assert.equal(r.fc_position, active ? 1 : null, `forecast of ${r.id}`);
        }
        if (page.length < 97) break;
        cursor = page.at(-1)!.id;
      }
      assert.deepEqual(seen, expected, JSON.stringify(f));
    }
  });

  it('reads a page, not the queue, without statistics', async () => {
    const seen: Array<{ sql: string; params: readonly unknown[] | undefined }> = [];
    const recorder: Queryable = {
      query: async (sql, params) => {
        seen.push({ sql, params });
        return { rows: [], rowCount: 0 };
      },
      exec: async () => {},
    };
    await listTasks(recorder, { state: 'queued', limit: 51 });
    assert.equal(seen.length, 1);
    const { rows } = await t.db.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
      `EXPLAIN (ANALYZE, FORMAT JSON) ${seen[0]!.sql}`,
      seen[0]!.params,
    );
    const plan = rows[0]!['QUERY PLAN'][0]!.Plan;
    // 51 rows, each read once by the walk (1,500 queued tasks in the table).
    const tasks = rowsTouched(plan, 'tasks');
    assert.ok(tasks <= 60, `a page of 51 read ${tasks} rows of tasks`);
    const forecasts = rowsTouched(plan, 'task_forecasts');
    assert.ok(forecasts <= 60, `a page of 51 read ${forecasts} forecasts`);
  });
});
