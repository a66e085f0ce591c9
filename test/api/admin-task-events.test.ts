import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDb } from '../helpers/db.ts';
import { bearer, submitBody, useAuthApp, userToken } from '../helpers/auth-app.ts';

interface EventsPage {
  task_id: string;
  events: Array<{ id: number; type: string; data: Record<string, unknown>; created_at: string }>;
  next_after: number | null;
}

describeEachDb('a task’s event history (admin)', (kind) => {
  const t = useAuthApp(kind);
  const admin = () => bearer(t.adminKey);

  it('is for admin keys only', async () => {
    const token = await userToken(t, 'ev-user');
    const url = '/v1/admin/tasks/x/events';
    assert.equal((await t.app.inject({ url })).statusCode, 401);
    assert.equal((await t.app.inject({ url, headers: bearer(token) })).statusCode, 403);
    assert.equal((await t.app.inject({ url, headers: bearer(t.appKey) })).statusCode, 403);
    const missing = await t.app.inject({ url, headers: admin() });
    assert.equal(missing.statusCode, 404);
    assert.equal((missing.json() as { error: { code: string } }).error.code, 'task_not_found');
  });

  it('lists the outbox rows of one task, oldest first, in keyset pages', async () => {
    const submitted = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(t.appKey),
      payload: submitBody('ev-user', { plan: 'start' }),
    });
    assert.equal(submitted.statusCode, 202, submitted.body);
    const id = (submitted.json() as { id: string }).id;
    // Another task's events must not show up in this one's history.
    await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(t.appKey),
      payload: submitBody('ev-other', { plan: 'start' }),
    });
    const canceled = await t.app.inject({
      method: 'POST',
      url: `/v1/admin/tasks/${id}/cancel`,
      headers: admin(),
    });
    assert.equal(canceled.statusCode, 200, canceled.body);

    const all = await t.app.inject({ url: `/v1/admin/tasks/${id}/events`, headers: admin() });
    assert.equal(all.statusCode, 200, all.body);
    const body = all.json() as EventsPage;
    assert.equal(body.task_id, id);
    assert.equal(body.next_after, null);
    // What the transitions wrote, read back independently from the table.
    const { rows } = await t.ctx.db.query<{ id: number; type: string }>(
      'SELECT id::int AS id, type FROM events WHERE task_id = $1 ORDER BY id',
      [id],
    );
    assert.deepEqual(
      body.events.map((e) => [e.id, e.type]),
      rows.map((r) => [r.id, r.type]),
    );
    assert.deepEqual(
      body.events.map((e) => e.type),
      ['queued', 'cancel_requested', 'finished'],
    );
    assert.match(String(body.events[1]!.data.reason), /administrator/);
    assert.equal(body.events[2]!.data.state, 'canceled');
    for (const e of body.events) assert.ok(!Number.isNaN(Date.parse(e.created_at)), e.created_at);

    // Pages of one: the same events, each once.
    const seen: number[] = [];
    let after = 0;
    for (;;) {
      const res = await t.app.inject({
        url: `/v1/admin/tasks/${id}/events?limit=1&after=${after}`,
        headers: admin(),
      });
      const page = res.json() as EventsPage;
      assert.ok(page.events.length <= 1);
      seen.push(...page.events.map((e) => e.id));
      if (page.next_after === null) break;
      after = page.next_after;
    }
    assert.deepEqual(
      seen,
      rows.map((r) => r.id),
    );
    const bad = await t.app.inject({ url: `/v1/admin/tasks/${id}/events?limit=0`, headers: admin() });
    assert.equal(bad.statusCode, 400);
  });
});
