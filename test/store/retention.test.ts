import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ProviderAdapter, ProviderOutcome } from '../../src/providers/types.ts';
import { applyRetention } from '../../src/scheduler/retention.ts';
import { describeEachDb } from '../helpers/db.ts';
import { postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const HOUR = 3_600_000;

/**
 * Retention of finished work against a real server on each database: finished tasks lose their
 * events and jobs after `taskDetailsHours`, then go with their images and files after
 * `finishedTaskHours`; the result cache expires by age; queued and running tasks keep everything,
 * and every balance still equals its ledger. Time is injected: the passes run at later `now`s.
 */
describeEachDb('retention of finished work', (kind) => {
  const holder = useTestServer(kind, {
    pipelines: {
      photography: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 5, cache: true },
          { name: 'store', concurrency: 5 },
        ],
      },
    },
    limits: { perUserRunningTasks: 2 },
    retention: { taskDetailsHours: 24, finishedTaskHours: 48, resultCacheHours: 48, batchSize: 1 },
  });

  it('removes only finished work past its window, files included; the ledger stays balanced', async () => {
    const server = holder.server;
    const { db } = server.ctx;
    // Calls with the prompt "hold" stay open until the end: those tasks are running (or queued behind them).
    const inner = server.ctx.providers.get('main')!;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const gated: ProviderAdapter = {
      ...inner,
      async call(req): Promise<ProviderOutcome> {
        if (req.prompt === 'hold') await gate;
        return inner.call(req);
      },
    };
    server.ctx.providers.set('main', gated);
    try {
      const submit = async (user: string, prompt: string) => {
        const r = await postJson(server.baseUrl, '/v1/tasks', {
          user_id: user,
          type: 'photography',
          plan: 'free',
          prompt,
        });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        return (r.body as { id: string }).id;
      };
      const done = [await submit('a', 'one'), await submit('a', 'two')];
      const held = [await submit('h', 'hold'), await submit('h', 'hold'), await submit('h', 'hold')];
      await waitFor(
        'the finished tasks',
        async () => {
          const r = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1::text[]) AND state = 'succeeded'`,
            [done],
          );
          return r.rows[0]!.n === done.length;
        },
        { timeoutMs: 180_000, intervalMs: 100 },
      );
      await waitFor(
        'two held calls running and one task queued behind them',
        async () => {
          const r = await db.query<{ state: string; n: number }>(
            `SELECT state, count(*)::int AS n FROM tasks WHERE id = ANY($1::text[]) GROUP BY state ORDER BY state`,
            [held],
          );
          const jobs = await db.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM jobs WHERE task_id = ANY($1::text[]) AND state = 'running'`,
            [held],
          );
          return (
            JSON.stringify(r.rows) ===
              JSON.stringify([
                { state: 'queued', n: 1 },
                { state: 'running', n: 2 },
              ]) && jobs.rows[0]!.n === 2
          );
        },
        { timeoutMs: 180_000, intervalMs: 100 },
      );

      const count = async (sql: string, ids: string[]) =>
        (await db.query<{ n: number }>(sql, [ids])).rows[0]!.n;
      const events = (ids: string[]) =>
        count('SELECT count(*)::int AS n FROM events WHERE task_id = ANY($1::text[])', ids);
      const jobs = (ids: string[]) =>
        count('SELECT count(*)::int AS n FROM jobs WHERE task_id = ANY($1::text[])', ids);
      const tasks = (ids: string[]) =>
        count('SELECT count(*)::int AS n FROM tasks WHERE id = ANY($1::text[])', ids);
      const heldBefore = await db.query(
        'SELECT id, state, images_done FROM tasks WHERE id = ANY($1::text[]) ORDER BY id',
        [held],
      );
      const heldEvents = await events(held);
      const heldJobs = await jobs(held);
      const images = await db.query<{ storage_key: string; thumb_key: string }>(
        'SELECT storage_key, thumb_key FROM images WHERE task_id = ANY($1::text[])',
        [done],
      );
      assert.equal(images.rows.length, 4);
      const files = images.rows.flatMap((r) => [r.storage_key, r.thumb_key]);
      const cache = await db.query<{ storage_keys: string[] }>('SELECT storage_keys FROM result_cache');
      assert.ok(cache.rows.length >= 2, 'both finished calls were cached');
      const cacheFiles = cache.rows.flatMap((r) => r.storage_keys);
      for (const f of [...files, ...cacheFiles]) await server.ctx.storage.get(f);
      const ledger = async () =>
        (
          await db.query<{ user_id: string; balance: number; ledger: number; rows: number }>(
            `SELECT u.id AS user_id, u.balance, sum(l.delta)::int AS ledger, count(l.id)::int AS rows
               FROM users u JOIN credit_ledger l ON l.user_id = u.id GROUP BY u.id, u.balance ORDER BY u.id`,
          )
        ).rows;
      const ledgerBefore = await ledger();
      for (const u of ledgerBefore) assert.equal(u.balance, u.ledger, `user ${u.user_id} balanced before`);
      const doneEvents = await events(done);
      assert.ok(doneEvents > 0 && (await jobs(done)) > 0);

      // Now: everything is recent.
      await applyRetention(server.ctx, new Date());
      assert.equal(await events(done), doneEvents);
      assert.equal(await tasks(done), 2);

      // Past the details window: events and jobs of the finished tasks go, the tasks and images stay.
      await applyRetention(server.ctx, new Date(Date.now() + 25 * HOUR));
      assert.equal(await events(done), 0);
      assert.equal(await jobs(done), 0);
      assert.equal(await tasks(done), 2);
      for (const f of files) await server.ctx.storage.get(f);
      const view = await fetch(`${server.baseUrl}/v1/tasks/${done[0]}`);
      assert.equal(view.status, 200);
      assert.equal(((await view.json()) as { images: unknown[] }).images.length, 2);

      // Past the task window: the finished tasks, their images and files, and the old cache entries go.
      await applyRetention(server.ctx, new Date(Date.now() + 49 * HOUR));
      assert.equal(await tasks(done), 0);
      assert.equal(
        await count('SELECT count(*)::int AS n FROM images WHERE task_id = ANY($1::text[])', done),
        0,
      );
      for (const f of [...files, ...cacheFiles])
        await assert.rejects(server.ctx.storage.get(f), `${f} deleted`);
      assert.equal((await db.query('SELECT 1 FROM result_cache')).rowCount, 0);
      assert.equal((await db.query('SELECT 1 FROM storage_garbage')).rowCount, 0);
      assert.equal((await fetch(`${server.baseUrl}/v1/tasks/${done[0]}`)).status, 404);

      // Queued and running tasks keep everything; the ledger is unchanged and balanced.
      const heldAfter = await db.query(
        'SELECT id, state, images_done FROM tasks WHERE id = ANY($1::text[]) ORDER BY id',
        [held],
      );
      assert.deepEqual(heldAfter.rows, heldBefore.rows);
      assert.equal(await events(held), heldEvents);
      assert.equal(await jobs(held), heldJobs);
      assert.deepEqual(await ledger(), ledgerBefore);
      assert.equal(
        await count(
          `SELECT count(*)::int AS n FROM credit_ledger WHERE task_id = ANY($1::text[]) AND reason = 'charge'`,
          done,
        ),
        2,
        'the charges of deleted tasks stay in the ledger',
      );
    } finally {
      release();
    }
  });
});
