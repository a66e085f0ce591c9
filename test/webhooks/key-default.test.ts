/**
 * A key's default task webhook (`darkroom keys create --webhook-url`): a submit made with the key,
 * or with a user token it issued, that names no `webhook_url` is delivered there, signed per
 * Standard Webhooks (verified with the npm `standardwebhooks` package); a submit's own URL wins.
 * And an admin retry reaches the task's webhook as `task.retried`, between two `task.finished`.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { createApiKey } from '../../src/api/auth/manage.ts';
import type { TaskView } from '../../src/api/views.ts';
import { describeEachDb } from '../helpers/db.ts';
import { useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { startReceiver, type Receiver } from './receiver.ts';

type Payload = { type: string; timestamp: string; data: TaskView };

describeEachDb('a key’s default task webhook', (kind) => {
  const t = useTestServer(kind, {
    auth: { enabled: true },
    inputs: { allowPrivateUrls: true },
    webhooks: { backoffBaseMs: 20, backoffMaxMs: 100, timeoutMs: 2000, pollMs: 50 },
  });
  let receiver: Receiver;
  let keyed: string;
  let plain: string;
  let admin: string;
  before(async () => {
    receiver = await startReceiver();
    const db = t.server.ctx.db;
    keyed = (await createApiKey(db, 'app', 'shop', { webhookUrl: `${receiver.url}/shop` })).key;
    plain = (await createApiKey(db, 'app', 'no default')).key;
    admin = (await createApiKey(db, 'admin', 'ops')).key;
  });
  after(async () => {
    await receiver?.close();
  });

  const secret = () => readFileSync(path.join(t.server.config.home, 'webhook-secret'), 'utf8').trim();

  async function call(credential: string, url: string, body: unknown) {
    const res = await fetch(`${t.server.baseUrl}${url}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  async function submit(credential: string, user: string, extra: Record<string, unknown> = {}) {
    const res = await call(credential, '/v1/tasks', {
      user_id: user,
      type: 'photography',
      plan: 'free',
      ...extra,
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.id as string;
  }

  /** The verified payloads the receiver got at `path` for task `id`, once `n` have come. */
  async function delivered(pathname: string, id: string, n: number): Promise<Payload[]> {
    const wh = new Webhook(secret());
    return waitFor(`${n} deliveries of ${id} at ${pathname}`, () => {
      const got = receiver.received
        .filter((r) => r.path === pathname)
        .map((r) => wh.verify(r.body, r.headers) as Payload)
        .filter((p) => p.data.id === id);
      return got.length >= n ? got : undefined;
    });
  }

  it('delivers a submit without webhook_url to its key’s default, and one of the key’s user tokens too', async () => {
    const byKey = await submit(keyed, 'kd-1');
    const [first] = await delivered('/shop', byKey, 1);
    assert.equal(first!.type, 'task.finished');
    assert.equal(first!.data.state, 'succeeded');

    const token = await call(keyed, '/v1/users/kd-2/tokens', {});
    assert.equal(token.status, 201, JSON.stringify(token.body));
    const byToken = await submit(token.body.token as string, 'kd-2');
    const [second] = await delivered('/shop', byToken, 1);
    assert.equal(second!.data.user_id, 'kd-2');

    // A submit's own webhook_url wins over the key's.
    const own = await submit(keyed, 'kd-1', { webhook_url: `${receiver.url}/own` });
    await delivered('/own', own, 1);
    // A key without a default: no delivery at all.
    const none = await submit(plain, 'kd-3');
    await waitFor('the task without a webhook to end', async () => {
      const res = await fetch(`${t.server.baseUrl}/v1/tasks/${none}`, {
        headers: { authorization: `Bearer ${plain}` },
      });
      return ((await res.json()) as { state: string }).state === 'succeeded';
    });
    const { rows } = await t.server.ctx.db.query<{ task_id: string }>(
      'SELECT task_id FROM webhook_deliveries WHERE task_id = ANY($1::text[])',
      [[own, none]],
    );
    assert.deepEqual(
      rows.map((r) => r.task_id),
      [own],
      'the own-URL task once, the other never',
    );
    assert.equal(receiver.received.filter((r) => r.path === '/shop' && r.body.includes(own)).length, 0);
  });

  it('tells the webhook of an admin retry (task.retried), then of the new attempt’s end', async () => {
    // The simulator fails image 1 of every call: the task fails, and so does its retry.
    const id = await submit(keyed, 'kd-4', { prompt: 'a dock [sim:fail-index=1]' });
    const [ended] = await delivered('/shop', id, 1);
    assert.equal(ended!.data.state, 'failed');
    const retried = await call(admin, `/v1/admin/tasks/${id}/retry`, {});
    assert.equal(retried.status, 202, JSON.stringify(retried.body));
    const all = await delivered('/shop', id, 3);
    assert.deepEqual(
      all.map((p) => p.type),
      ['task.finished', 'task.retried', 'task.finished'],
    );
    assert.equal(all[1]!.data.attempt, 2);
    assert.equal(all[2]!.data.attempt, 2);
    assert.equal(all[2]!.data.state, 'failed');
  });
});
