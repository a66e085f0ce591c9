import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import type { Queryable } from '../../src/store/db.ts';
import { cancelExpiredQueuedTasks } from '../../src/store/schedule.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { rowsTouched, type PlanNode } from '../helpers/plan.ts';

/**
 * What the leader's loops read while nothing changes must not grow with the queue: an idle
 * server holding 100,000 queued tasks read 120,000 rows a second, most of it the deadline loop
 * scanning every queued task once a second (bench scale, idle_server). Each statement is run
 * here under EXPLAIN ANALYZE (rolled back) against a backlog of queued tasks without deadlines
 * plus a few due ones, and the rows its scans of `tasks` produced or filtered away are summed
 * from the plan PostgreSQL itself reports.
 */

const BACKLOG = 3000;

/** Runs `fn` once to learn its statements, then explains each (analyzed, rolled back). */
async function explainStatements(
  db: Queryable & { transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> },
  fn: (q: Queryable) => Promise<unknown>,
): Promise<PlanNode[]> {
  const seen: Array<{ sql: string; params: readonly unknown[] | undefined }> = [];
  const recorder: Queryable = {
    query: async (sql, params) => {
      seen.push({ sql, params });
      return { rows: [], rowCount: 0 };
    },
    exec: async () => {},
  };
  await fn(recorder);
  const plans: PlanNode[] = [];
  for (const { sql, params } of seen) {
    await db
      .transaction(async (tx) => {
        const { rows } = await tx.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
          `EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`,
          params,
        );
        plans.push(rows[0]!['QUERY PLAN'][0]!.Plan);
        throw new Error('rollback');
      })
      .catch((e: unknown) => {
        if (!(e instanceof Error && e.message === 'rollback')) throw e;
      });
  }
  return plans;
}

describeEachDb('what an idle leader reads', (kind) => {
  const t = useTestDb(kind);

  before(async () => {
    await t.db.query(
      `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, images_total, credits_charged, deadline_at)
       SELECT 'q' || g, 'u' || (g % 20), 'photography', 'free', 1, 1, 'queued', 2, 0,
              CASE WHEN g <= 3 THEN now() - interval '1 minute' END
         FROM generate_series(1, $1) g`,
      [BACKLOG],
    );
    await t.db.exec('ANALYZE tasks');
  });

  it('the deadline loop reads the due tasks, not the backlog', async () => {
    const plans = await explainStatements(t.db, (q) => cancelExpiredQueuedTasks(q, 100, 'deadline'));
    assert.ok(plans.length > 0);
    const touched = plans.reduce((n, p) => n + rowsTouched(p, 'tasks'), 0);
    // The three due tasks (read by the scan, then by the updates that follow), not 3,000.
    assert.ok(touched <= 20, `the deadline loop touched ${touched} rows of tasks`);
  });
});
