import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, it } from 'node:test';
import { createAlertEngine } from '../../src/alerts/engine.ts';
import { recordProviderCall } from '../../src/store/provider-calls.ts';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { startReceiver, type Receiver } from '../webhooks/receiver.ts';

const FEISHU_SECRET = 'feishu-test-secret';
const DINGTALK_SECRET = 'SECdingtalk-test-secret';

interface AlertView {
  rule: string;
  key: string;
  state: string;
  notifications: Array<{
    kind: string;
    type: string;
    state: string;
    attempts: number;
    last_error: string | null;
  }>;
}

/**
 * Fire → deliver → resolve against real HTTP receivers, one per vendor format. The engine's
 * clock is injected: "running for 181 s" and "no heartbeat for 181 s" without waiting.
 * The server's own loop stays out of the test's way (alerts.enabled: false); the test drives
 * an engine of its own on the server's context.
 */
describeEachDb('alerts', (kind) => {
  let receiver: Receiver;
  let wecomCalls = 0;
  before(async () => {
    receiver = await startReceiver((_n, r) => {
      // WeCom's own refusal on the first message: 200 with a non-zero errcode (45009: rate limited).
      if (r.path.startsWith('/wecom') && wecomCalls++ === 0)
        return { status: 200, body: '{"errcode":45009,"errmsg":"api freq out of limit"}' };
      return 200;
    });
  });
  after(async () => {
    await receiver?.close();
  });
  const t = useTestServer(kind, {
    providers: { main: { sim: { latencyMs: 600_000, jitterMs: 0 } } },
    limits: { perUserRunningTasks: 1 },
    alerts: {
      enabled: false,
      retryBaseMs: 10,
      rules: { queued: { threshold: 2 } },
      channels: [],
    },
  });

  it('fires each rule once, delivers every vendor format with retries, and resolves', async () => {
    const ctx = t.server.ctx;
    const base = t.server.baseUrl;
    // Channels point at this test's receiver, known only now.
    ctx.config.alerts.channels = [
      { type: 'generic', url: `${receiver.url}/generic` },
      { type: 'wecom', url: `${receiver.url}/wecom?key=k` },
      { type: 'feishu', url: `${receiver.url}/feishu/hook/x`, secret: FEISHU_SECRET },
      {
        type: 'dingtalk',
        url: `${receiver.url}/dingtalk/robot/send?access_token=t`,
        secret: DINGTALK_SECRET,
      },
      { type: 'slack', url: `${receiver.url}/slack/services/T/B/X` },
    ];
    let clock = new Date();
    const engine = createAlertEngine(ctx, () => clock);

    // One user, one running task at a time: 1 running (its call held by the simulator), 3 queued.
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await postJson(base, '/v1/tasks', { user_id: 'al', type: 'photography', plan: 'free' });
      ids.push(res.body.id as string);
    }
    await waitFor(
      'one task running',
      async () => (await getJson(base, `/v1/tasks/${ids[0]}`)).body.state === 'running',
    );
    for (let i = 0; i < 8; i++)
      await recordProviderCall(ctx.db, { provider: 'main', keyId: 'k1', outcome: 'success', latencyMs: 10 });
    await recordProviderCall(ctx.db, {
      provider: 'main',
      keyId: 'k1',
      outcome: 'transient',
      latencyMs: 10,
      message: 'x',
    });
    await recordProviderCall(ctx.db, {
      provider: 'main',
      keyId: 'k1',
      outcome: 'transient',
      latencyMs: 10,
      message: 'x',
    });
    await recordProviderCall(ctx.db, {
      provider: 'main',
      keyId: 'k1',
      outcome: 'rate_limited',
      latencyMs: 10,
      message: '429',
    });

    clock = new Date(Date.now() + 181_000);
    assert.deepEqual(await engine.evaluate(), { fired: 5, resolved: 0 });
    assert.deepEqual(await engine.evaluate(), { fired: 0, resolved: 0 }, 'still firing: no duplicates');
    assert.equal(await engine.deliver(), 24, 'the first WeCom message was refused');
    const firing = ((await getJson(base, '/v1/admin/alerts')).body.firing as AlertView[])
      .map((a) => a.rule)
      .sort();
    assert.deepEqual(firing, ['noLiveWorker', 'providerErrorRate', 'queued', 'rateLimitRate', 'taskRunning']);
    clock = new Date(clock.getTime() + 1000);
    assert.equal(await engine.deliver(), 1, 'the refused message is retried');

    const firingRequests = receiver.received.splice(0);
    assert.equal(firingRequests.length, 26);
    checkVendorShapes(firingRequests, 'FIRING');

    // Clear every condition: cancel the queued tasks, dilute the errors, and move the clock back
    // to now (the running task is young again, the worker's heartbeat fresh).
    for (const id of ids.slice(1)) await postJson(base, `/v1/tasks/${id}/cancel`, {});
    for (let i = 0; i < 100; i++)
      await recordProviderCall(ctx.db, { provider: 'main', keyId: 'k1', outcome: 'success', latencyMs: 10 });
    clock = new Date(Date.now() + 1000);
    assert.deepEqual(await engine.evaluate(), { fired: 0, resolved: 5 });
    assert.equal(await engine.deliver(), 25);
    const resolvedRequests = receiver.received.splice(0);
    checkVendorShapes(resolvedRequests, 'RESOLVED');

    const { body } = await getJson(base, '/v1/admin/alerts');
    assert.deepEqual(body.firing, []);
    const history = body.history as AlertView[];
    assert.equal(history.length, 5);
    for (const a of history) {
      assert.equal(a.state, 'resolved');
      assert.equal(a.notifications.length, 10, 'firing and resolved, five channels each');
      assert.ok(a.notifications.every((n) => n.state === 'delivered'));
    }
    const wecom = history
      .flatMap((a) => a.notifications)
      .filter((n) => n.type === 'wecom' && n.attempts === 2);
    assert.equal(wecom.length, 1);

    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /darkroom_alert_notifications_total\{channel="wecom",outcome="retry"\} 1/);
    await postJson(base, `/v1/tasks/${ids[0]}/cancel`, {});
  });
});

function checkVendorShapes(
  requests: Array<{ path: string; body: string }>,
  word: 'FIRING' | 'RESOLVED',
): void {
  const byPath = (prefix: string) => requests.filter((r) => r.path.startsWith(prefix));
  for (const r of byPath('/generic')) {
    const b = JSON.parse(r.body) as { status: string; rule: string; summary: string; source: string };
    assert.equal(b.source, 'darkroom');
    assert.equal(b.status, word.toLowerCase());
    assert.ok(b.summary.length > 0);
  }
  // WeCom group robot: {"msgtype":"markdown","markdown":{"content":…}}
  for (const r of byPath('/wecom')) {
    const b = JSON.parse(r.body) as { msgtype: string; markdown: { content: string } };
    assert.equal(b.msgtype, 'markdown');
    assert.ok(b.markdown.content.includes(`[${word}]`));
    assert.ok(Buffer.byteLength(b.markdown.content) <= 4096);
  }
  // Feishu custom bot: {"msg_type":"text","content":{"text":…},"timestamp","sign"}, sign per Feishu's
  // documented algorithm: base64(HmacSHA256(key = timestamp + "\n" + secret, message = "")).
  for (const r of byPath('/feishu')) {
    const b = JSON.parse(r.body) as {
      msg_type: string;
      content: { text: string };
      timestamp: string;
      sign: string;
    };
    assert.equal(b.msg_type, 'text');
    assert.ok(b.content.text.includes(`[${word}]`));
    const expected = createHmac('sha256', `${b.timestamp}\n${FEISHU_SECRET}`).update('').digest('base64');
    assert.equal(b.sign, expected);
  }
  // DingTalk custom robot: markdown {title, text}; timestamp (ms) and sign in the query, sign =
  // base64(HmacSHA256(key = secret, message = timestamp + "\n" + secret)).
  for (const r of byPath('/dingtalk')) {
    const b = JSON.parse(r.body) as { msgtype: string; markdown: { title: string; text: string } };
    assert.equal(b.msgtype, 'markdown');
    assert.ok(b.markdown.title.includes(`[${word}]`));
    const q = new URL(r.path, 'http://x').searchParams;
    assert.equal(q.get('access_token'), 't');
    const expected = createHmac('sha256', DINGTALK_SECRET)
      .update(`${q.get('timestamp')}\n${DINGTALK_SECRET}`)
      .digest('base64');
    assert.equal(q.get('sign'), expected);
  }
  // Slack incoming webhook: {"text": …, "blocks": [...]}
  for (const r of byPath('/slack')) {
    const b = JSON.parse(r.body) as { text: string; blocks: Array<{ type: string }> };
    assert.ok(b.text.includes(`[${word}]`));
    assert.equal(b.blocks[0]!.type, 'header');
  }
  for (const p of ['/generic', '/wecom', '/feishu', '/dingtalk', '/slack'])
    assert.ok(byPath(p).length >= 5, p);
}
