import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/api/app.ts';
import { createApiKey } from '../../src/api/auth/manage.ts';
import type { Context } from '../../src/context.ts';
import { createPostgresDb } from '../../src/store/postgres.ts';
import { describeEachDb } from '../helpers/db.ts';
import { bearer, SIGNING_SECRET, submitBody, useAuthApp, userToken } from '../helpers/auth-app.ts';

/**
 * Submit limits hold across API processes: two app instances (on PostgreSQL each with its own
 * connection pool, as two processes would be) share one database and one injected clock.
 */
describeEachDb('submit limits across two API instances', (kind) => {
  const t = useAuthApp(kind, {
    limits: { perUserQueuedTasks: 3, userSubmitsPerMinute: 4, keySubmitsPerMinute: 6 },
  });
  let second: FastifyInstance;
  let closeSecond: () => Promise<void>;
  before(async () => {
    const db = t.dbUrl ? await createPostgresDb({ url: t.dbUrl, poolSize: 5 }) : t.ctx.db;
    const ctx: Context = { ...t.ctx, db };
    second = await buildApp(ctx, { signingSecret: SIGNING_SECRET, now: t.clock.now });
    closeSecond = async () => {
      await second.close();
      if (db !== t.ctx.db) await db.close();
    };
  });
  after(async () => closeSecond?.());

  const apps = () => [t.app, second];
  const submit = (i: number, key: string, userId: string) =>
    apps()[i % 2]!.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(key),
      payload: submitBody(userId),
    });
  const cancel = (id: string) =>
    t.app.inject({ method: 'POST', url: `/v1/tasks/${id}/cancel`, headers: bearer(t.adminKey) });
  const count = async (sql: string, params: unknown[]) =>
    (await t.ctx.db.query<{ n: number }>(sql, params)).rows[0]!.n;

  it('limits one user to userSubmitsPerMinute in a fixed window, answering 429 with Retry-After', async () => {
    t.clock.set(Date.UTC(2026, 0, 1, 12, 0, 30));
    for (let i = 0; i < 4; i++) {
      const res = await submit(i, t.appKey, 'rate-user');
      assert.equal(res.statusCode, 202, res.body);
      await cancel((res.json() as { id: string }).id); // stay under the queued cap
    }
    const refused = await submit(1, t.appKey, 'rate-user');
    assert.equal(refused.statusCode, 429);
    assert.equal((refused.json() as { error: { code: string } }).error.code, 'rate_limited');
    assert.equal(refused.headers['retry-after'], '30');
    // Nothing stored, nothing charged for the refused submit.
    assert.equal(await count('SELECT count(*)::int AS n FROM tasks WHERE user_id = $1', ['rate-user']), 4);
    assert.equal(
      await count(`SELECT count(*)::int AS n FROM credit_ledger WHERE user_id = $1 AND reason = 'charge'`, [
        'rate-user',
      ]),
      4,
    );
    t.clock.advance(29_000);
    assert.equal((await submit(0, t.appKey, 'rate-user')).statusCode, 429);
    t.clock.advance(1_000); // the next minute
    assert.equal((await submit(0, t.appKey, 'rate-user')).statusCode, 202);
  });

  it("caps one user's queued tasks, exactly, under concurrent submits to both instances", async () => {
    t.clock.set(Date.UTC(2026, 0, 1, 13, 0, 0));
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => submit(i, t.appKey, 'busy-user')));
    const accepted = results.filter((r) => r.statusCode === 202);
    const refused = results.filter((r) => r.statusCode === 429);
    assert.equal(accepted.length, 3, results.map((r) => r.body).join('\n'));
    assert.equal(refused.length, 5);
    for (const r of refused) {
      assert.equal((r.json() as { error: { code: string } }).error.code, 'user_queue_full');
      assert.equal(r.headers['retry-after'], '10');
    }
    assert.equal(
      await count(`SELECT count(*)::int AS n FROM tasks WHERE user_id = $1 AND state = 'queued'`, [
        'busy-user',
      ]),
      3,
    );
    // Another user is not affected; a started or canceled task frees a place.
    assert.equal((await submit(0, t.appKey, 'other-user')).statusCode, 202);
    await cancel((accepted[0]!.json() as { id: string }).id);
    assert.equal((await submit(1, t.appKey, 'busy-user')).statusCode, 202);
  });

  it('limits one key (and the user tokens it issued) to keySubmitsPerMinute, exactly, across instances', async () => {
    t.clock.set(Date.UTC(2026, 0, 1, 14, 0, 10));
    const key = (await createApiKey(t.ctx.db, 'app', 'rate-limited app')).key;
    const token = await userToken(t, 'key-user-token', key);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => submit(i, key, `key-user-${i}`)));
    assert.equal(
      results.filter((r) => r.statusCode === 202).length,
      6,
      results.map((r) => r.body).join('\n'),
    );
    const refused = results.filter((r) => r.statusCode === 429);
    assert.equal(refused.length, 4);
    for (const r of refused) {
      assert.equal((r.json() as { error: { code: string } }).error.code, 'rate_limited');
      assert.match((r.json() as { error: { message: string } }).error.message, /key/);
      assert.equal(r.headers['retry-after'], '50');
    }
    const byToken = await second.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(token),
      payload: submitBody('key-user-token'),
    });
    assert.equal(byToken.statusCode, 429);
    // Other keys are not affected.
    assert.equal((await submit(0, t.appKey, 'key-user-other')).statusCode, 202);
  });
});
