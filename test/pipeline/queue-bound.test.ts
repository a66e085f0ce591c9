import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { AppError } from '../../src/errors.ts';
import { submitTask, type SubmitRequest } from '../../src/pipeline/submit.ts';
import { cancelTask } from '../../src/pipeline/transitions.ts';
import type { Db } from '../../src/store/db.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { testConfig } from '../helpers/config.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';
import { submitRequest } from '../helpers/submit-request.ts';

/**
 * The queue bound (limits.maxQueuedTasks) under concurrent submits. Counting the queue and then
 * inserting, under READ COMMITTED, let 20 of 30 concurrent submits through against a limit of 5
 * (issue 9): each transaction counted before the others committed. The bound is now a counter
 * row the statement that writes the submits locks first and counts each submit on last
 * (darkroom_submit_many,
 * src/store/submit-write.ts); submits that arrive together share that statement (the group
 * commit), and the rest run on separate pooled connections on PostgreSQL.
 */

const request = (i: number): SubmitRequest => submitRequest(`u-${i}`, { requestHash: `h${i}` });

async function count(db: Db, sql: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(sql);
  return rows[0]!.n;
}

describeEachDb('queue bound under concurrent submits', (kind) => {
  const t = useTestDb(kind);
  const config = testConfig({ credits: { initialGrant: 100 }, limits: { maxQueuedTasks: 5 } });
  let db: Db;
  let pool: Db | undefined;
  before(async () => {
    // Thirty connections, so that thirty transactions are open at the same time.
    pool = t.url ? await createPostgresDb({ url: t.url, poolSize: 30 }) : undefined;
    db = pool ?? t.db;
  });

  it('accepts exactly the limit out of 30 concurrent submits, storing and charging nothing for the rest', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => submitTask(db, config, request(i))),
    );
    const accepted = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter(
      (r) => r.status === 'rejected' && r.reason instanceof AppError && r.reason.code === 'queue_full',
    );
    assert.equal(accepted.length, 5);
    assert.equal(refused.length, 25);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE state = 'queued'`), 5);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM credit_ledger WHERE reason = 'charge'`), 5);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM jobs`), 5);
    assert.equal(await count(db, `SELECT queued AS n FROM queue_depth`), 5);
    // Positions at submit: each counted the tasks queued before it, no two the same.
    const positions = accepted.map(
      (r) => (r as PromiseFulfilledResult<{ body: { position: number } }>).value.body.position,
    );
    assert.deepEqual(
      positions.sort((a, b) => a - b),
      [0, 1, 2, 3, 4],
    );
  });

  it('frees a place when a queued task leaves the queue (canceled or started), and only one', async () => {
    const { rows } = await db.query<{ id: string }>(
      `SELECT id FROM tasks WHERE state = 'queued' ORDER BY id LIMIT 2`,
    );
    await db.transaction((tx) => cancelTask(tx, rows[0]!.id, 'canceled by request'));
    // Started by the scheduler: the same statement its admission runs (src/store/schedule.ts).
    await db.query(
      `UPDATE tasks SET state = 'running', started_at = now() WHERE id = $1 AND state = 'queued'`,
      [rows[1]!.id],
    );
    // A task moving on from running does not count again.
    await db.query(`UPDATE tasks SET state = 'succeeded', finished_at = now() WHERE id = $1`, [rows[1]!.id]);
    assert.equal(await count(db, `SELECT queued AS n FROM queue_depth`), 3);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => submitTask(db, config, request(100 + i))),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 2);
    assert.equal(await count(db, `SELECT count(*)::int AS n FROM tasks WHERE state = 'queued'`), 5);
    assert.equal(await count(db, `SELECT queued AS n FROM queue_depth`), 5);
    await pool?.close();
  });
});
