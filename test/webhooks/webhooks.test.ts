import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { TaskView } from '../../src/api/views.ts';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { startReceiver, type Receiver } from './receiver.ts';

interface Delivery {
  id: string;
  task_id: string;
  event_type: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
}

const FAST_RETRIES = { backoffBaseMs: 20, backoffMaxMs: 100, timeoutMs: 2000, pollMs: 50 };

async function deliveriesOf(base: string, taskId: string): Promise<Delivery[]> {
  const { body } = await getJson(base, `/v1/admin/webhooks/deliveries?task_id=${taskId}`);
  return body.deliveries as Delivery[];
}

describeEachDb('task webhooks', (kind) => {
  const t = useTestServer(kind, { inputs: { allowPrivateUrls: true }, webhooks: FAST_RETRIES });
  let receiver: Receiver;
  // The receiver fails the first two requests of each path ending in /flaky.
  const seen = new Map<string, number>();
  before(async () => {
    receiver = await startReceiver((_n, r) => {
      const count = (seen.get(r.path) ?? 0) + 1;
      seen.set(r.path, count);
      return r.path.endsWith('/flaky') && count <= 2 ? 503 : 200;
    });
  });
  after(async () => {
    await receiver?.close();
  });

  const secret = () => readFileSync(path.join(t.server.config.home, 'webhook-secret'), 'utf8').trim();

  it('signs per Standard Webhooks and redelivers with the same id after two failures', async () => {
    const base = t.server.baseUrl;
    const url = `${receiver.url}/t1/flaky`;
    const res = await postJson(base, '/v1/tasks', {
      user_id: 'wh1',
      type: 'photography',
      plan: 'free',
      webhook_url: url,
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const id = res.body.id as string;
    const requests = await waitFor('three attempts', () => {
      const r = receiver.received.filter((x) => x.path === '/t1/flaky');
      return r.length >= 3 ? r : undefined;
    });
    await waitFor(
      'the delivery to be recorded',
      async () => (await deliveriesOf(base, id))[0]?.state === 'delivered',
    );
    assert.equal(requests.length, 3, 'no attempt after the successful one');
    const ids = new Set(requests.map((r) => r.headers['webhook-id']));
    assert.equal(ids.size, 1, 'the same webhook-id on every attempt');
    assert.equal(new Set(requests.map((r) => r.body)).size, 1, 'the same body on every attempt');
    // The independent implementation (npm standardwebhooks) verifies each attempt's signature.
    const wh = new Webhook(secret());
    for (const r of requests) {
      const payload = wh.verify(r.body, r.headers) as { type: string; timestamp: string; data: TaskView };
      assert.equal(payload.type, 'task.finished');
      assert.equal(payload.data.id, id);
      assert.equal(payload.data.state, 'succeeded');
      assert.equal(payload.data.images.length, 2);
      assert.match(payload.data.images[0]!.url, /^http:\/\/localhost:\d+\/v1\/files\//);
    }
    const tampered = { ...requests[0]!.headers, 'webhook-id': 'msg_other' };
    assert.throws(() => wh.verify(requests[0]!.body, tampered), 'a changed id breaks the signature');

    const [delivery] = await deliveriesOf(base, id);
    assert.equal(delivery!.attempts, 3);
    assert.equal(delivery!.last_status, 200);
    assert.equal(delivery!.event_type, 'task.finished');
    assert.equal(delivery!.id, [...ids][0]);
  });

  it('delivers every stage in order when asked, each after the previous one succeeded', async () => {
    const base = t.server.baseUrl;
    const res = await postJson(base, '/v1/tasks', {
      user_id: 'wh2',
      type: 'photography',
      plan: 'free',
      webhook_url: `${receiver.url}/t2/flaky`,
      webhook_stages: true,
    });
    const id = res.body.id as string;
    await waitFor('every delivery to succeed', async () => {
      const d = await deliveriesOf(base, id);
      return (
        d.length > 0 &&
        d.some((x) => x.event_type === 'task.finished') &&
        d.every((x) => x.state === 'delivered')
      );
    });
    const wh = new Webhook(secret());
    const got = receiver.received
      .filter((r) => r.path === '/t2/flaky')
      .map((r) => ({
        id: r.headers['webhook-id']!,
        type: (wh.verify(r.body, r.headers) as { type: string }).type,
      }));
    // Distinct messages in arrival order: the first (retried twice) before any later one.
    const order = got.map((g) => g.id).filter((x, i, all) => all.indexOf(x) === i);
    const eventIds = order.map((x) => Number(x.slice(x.lastIndexOf('_') + 1)));
    assert.deepEqual(
      eventIds,
      [...eventIds].sort((a, b) => a - b),
      'messages arrive in event order',
    );
    const firstId = order[0]!;
    const lastAttemptOfFirst = got.map((g) => g.id).lastIndexOf(firstId);
    assert.ok(
      got.slice(0, lastAttemptOfFirst).every((g) => g.id === firstId),
      'nothing overtakes a retried message',
    );
    const types = order.map((x) => got.find((g) => g.id === x)!.type);
    assert.equal(types[0], 'task.running');
    assert.ok(types.includes('task.stage'));
    assert.equal(types[types.length - 1], 'task.finished');
  });

  it('refuses forbidden targets at submit and host names that resolve to them at delivery', async () => {
    const base = t.server.baseUrl;
    const metadata = await postJson(base, '/v1/tasks', {
      user_id: 'wh3',
      type: 'photography',
      plan: 'free',
      webhook_url: 'http://169.254.169.254/latest/meta-data',
    });
    assert.equal(metadata.status, 422);
    assert.equal((metadata.body.error as { code: string }).code, 'webhook_url_forbidden');
    const ftp = await postJson(base, '/v1/tasks', {
      user_id: 'wh3',
      type: 'photography',
      plan: 'free',
      webhook_url: 'ftp://example.com/x',
    });
    assert.equal(ftp.status, 400);
  });
});

describeEachDb('task webhooks without private targets allowed', (kind) => {
  const t = useTestServer(kind, { webhooks: { ...FAST_RETRIES, maxAgeHours: 0.0001 } });

  it('refuses a loopback IP at submit and a name resolving to loopback when sending', async () => {
    const base = t.server.baseUrl;
    const literal = await postJson(base, '/v1/tasks', {
      user_id: 'wh4',
      type: 'photography',
      plan: 'free',
      webhook_url: 'http://127.0.0.1:9/hook',
    });
    assert.equal(literal.status, 422);
    assert.equal((literal.body.error as { code: string }).code, 'webhook_url_forbidden');
    const named = await postJson(base, '/v1/tasks', {
      user_id: 'wh4',
      type: 'photography',
      plan: 'free',
      webhook_url: 'http://localhost:9/hook',
    });
    assert.equal(named.status, 202);
    const id = named.body.id as string;
    // maxAgeHours here is 0.36 s: the delivery gives up after a few refused attempts.
    const [d] = await waitFor('the delivery to give up', async () => {
      const list = await deliveriesOf(base, id);
      return list[0]?.state === 'failed' ? list : undefined;
    });
    assert.match(d!.last_error ?? '', /private|loopback|Refusing/i);
    assert.equal(d!.last_status, null, 'no connection was made');
  });
});
