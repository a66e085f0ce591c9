import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDb } from '../helpers/db.ts';
import { bearer, submitBody, useAuthApp, userToken } from '../helpers/auth-app.ts';

describeEachDb('admin task and credit routes', (kind) => {
  const t = useAuthApp(kind);
  const admin = () => bearer(t.adminKey);
  const json = <T>(res: { json(): unknown }) => res.json() as T;

  it('are for admin keys only', async () => {
    const token = await userToken(t, 'adm-user');
    const routes: Array<['GET' | 'POST', string, unknown]> = [
      ['GET', '/v1/admin/tasks', undefined],
      ['POST', '/v1/admin/tasks/x/cancel', undefined],
      ['POST', '/v1/admin/tasks/x/retry', {}],
      ['POST', '/v1/admin/users/adm-user/credits', { delta: 5, reason: 'r' }],
      ['GET', '/v1/admin/users/adm-user/credits', undefined],
    ];
    for (const [method, url, payload] of routes) {
      const opts = { method, url, ...(payload ? { payload: payload as Record<string, unknown> } : {}) };
      assert.equal((await t.app.inject(opts)).statusCode, 401, url);
      assert.equal((await t.app.inject({ ...opts, headers: bearer(token) })).statusCode, 403, url);
      assert.equal((await t.app.inject({ ...opts, headers: bearer(t.appKey) })).statusCode, 403, url);
    }
    assert.equal((await t.app.inject({ url: '/v1/admin/tasks', headers: admin() })).statusCode, 200);
  });

  it('lists every user’s tasks with filters and keyset pagination', async () => {
    const ids: string[] = [];
    for (const [user, plan] of [
      ['f-a', 'free'],
      ['f-b', 'start'],
      ['f-a', 'start'],
      ['f-c', 'free'],
      ['f-a', 'free'],
    ] as const) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/tasks',
        headers: bearer(t.appKey),
        payload: submitBody(user, { plan }),
      });
      assert.equal(res.statusCode, 202, res.body);
      ids.push(json<{ id: string }>(res).id);
    }
    type Page = {
      tasks: Array<{ id: string; user_id: string; plan: string; state: string }>;
      next_cursor: string | null;
    };
    const get = async (query: string) => {
      const res = await t.app.inject({ url: `/v1/admin/tasks?${query}`, headers: admin() });
      assert.equal(res.statusCode, 200, res.body);
      return json<Page>(res);
    };
    const fa = await get('user_id=f-a');
    assert.deepEqual(
      fa.tasks.map((x) => x.id),
      [ids[4], ids[2], ids[0]],
    );
    const start = await get('plan=start');
    assert.deepEqual(start.tasks.map((x) => x.id).sort(), [ids[1], ids[2]].sort());
    const freeA = await get('plan=free&user_id=f-a&state=queued');
    assert.deepEqual(
      freeA.tasks.map((x) => x.id),
      [ids[4], ids[0]],
    );
    // Time range: created at or after the third task.
    const { rows } = await t.ctx.db.query<{ created_at: Date }>(
      'SELECT created_at FROM tasks WHERE id = $1',
      [ids[2]],
    );
    const since = await get(
      `created_after=${encodeURIComponent(rows[0]!.created_at.toISOString())}&user_id=f-a`,
    );
    assert.deepEqual(
      since.tasks.map((x) => x.id),
      [ids[4], ids[2]],
    );
    const before = await get(
      `created_before=${encodeURIComponent(rows[0]!.created_at.toISOString())}&user_id=f-a`,
    );
    assert.deepEqual(
      before.tasks.map((x) => x.id),
      [ids[0]],
    );
    // Pages of two, newest first, no task twice, none missing.
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Page = await get(`limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      assert.ok(page.tasks.length <= 2);
      seen.push(...page.tasks.map((x) => x.id));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, [...seen].sort().reverse());
    for (const id of ids) assert.equal(seen.filter((s) => s === id).length, 1);
    const bad = await t.app.inject({ url: '/v1/admin/tasks?created_after=yesterday', headers: admin() });
    assert.equal(bad.statusCode, 400);
  });

  it('cancels any user’s task, refunding what did not run', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(t.appKey),
      payload: submitBody('cancel-me', { plan: 'start' }),
    });
    const id = json<{ id: string }>(res).id;
    const canceled = await t.app.inject({
      method: 'POST',
      url: `/v1/admin/tasks/${id}/cancel`,
      headers: admin(),
    });
    assert.equal(canceled.statusCode, 200, canceled.body);
    const view = json<{ state: string; credits_refunded: number; error: string }>(canceled);
    assert.equal(view.state, 'canceled');
    assert.equal(view.credits_refunded, 30);
    assert.match(view.error, /administrator/);
    const again = await t.app.inject({
      method: 'POST',
      url: `/v1/admin/tasks/${id}/cancel`,
      headers: admin(),
    });
    assert.equal(again.statusCode, 409);
    const missing = await t.app.inject({
      method: 'POST',
      url: '/v1/admin/tasks/nope/cancel',
      headers: admin(),
    });
    assert.equal(missing.statusCode, 404);
  });

  it('adjusts credits with a reason recorded in the ledger', async () => {
    const add = await t.app.inject({
      method: 'POST',
      url: '/v1/admin/users/credit-user/credits',
      headers: admin(),
      payload: { delta: 50, reason: 'goodwill after outage #12' },
    });
    assert.equal(add.statusCode, 200, add.body);
    assert.equal(json<{ balance: number }>(add).balance, t.ctx.config.credits.initialGrant + 50);
    const remove = await t.app.inject({
      method: 'POST',
      url: '/v1/admin/users/credit-user/credits',
      headers: admin(),
      payload: { delta: -20, reason: 'chargeback' },
    });
    assert.equal(json<{ balance: number }>(remove).balance, t.ctx.config.credits.initialGrant + 30);
    for (const payload of [
      { delta: 0, reason: 'x' },
      { delta: 5 },
      { delta: 5, reason: '  ' },
      { delta: 1.5, reason: 'x' },
    ]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/v1/admin/users/credit-user/credits',
        headers: admin(),
        payload,
      });
      assert.equal(res.statusCode, 400, JSON.stringify(payload));
    }
    const ledger = await t.app.inject({ url: '/v1/admin/users/credit-user/credits', headers: admin() });
    const body = json<{
      balance: number;
      ledger: Array<{ delta: number; reason: string; note: string | null }>;
    }>(ledger);
    assert.equal(body.balance, t.ctx.config.credits.initialGrant + 30);
    assert.deepEqual(
      body.ledger.map((r) => [r.reason, r.delta]),
      [
        ['adjust', -20],
        ['adjust', 50],
        ['grant', t.ctx.config.credits.initialGrant],
      ],
    );
    assert.match(body.ledger[1]!.note!, /^goodwill after outage #12 \(by drk_/);
    assert.match(body.ledger[0]!.note!, /^chargeback/);
    // The balance the user sees agrees.
    const seen = await t.app.inject({ url: '/v1/users/credit-user/credits', headers: bearer(t.appKey) });
    assert.equal(json<{ balance: number }>(seen).balance, body.balance);
  });
});
