import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import sharp from 'sharp';
import { createPostgresDatabase, describeEachDb } from '../helpers/db.ts';
import { testConfigInput } from '../helpers/config.ts';
import { freePort, startServe, stopCleanly, type DarkroomProcess } from '../helpers/process.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

interface TaskBody {
  id: string;
  state: string;
  images_total: number;
  credits_charged: number;
  credits_refunded: number;
  progress: { done: number; failed: number; total: number };
  images: Array<{ index: number; url: string; thumbnail_url: string; width: number; height: number }>;
}

/** Reads an SSE stream until the server ends it; returns the events in order. */
async function readSse(url: string): Promise<Array<{ event: string; data: Record<string, unknown> }>> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const text = await res.text(); // the stream ends after the final state
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as Record<string, unknown>;
      return { event, data };
    });
}

describeEachDb('darkroom serve, end to end over HTTP', (kind) => {
  let proc: DarkroomProcess;
  let base: string;
  let drop: (() => Promise<void>) | undefined;

  before(async () => {
    const port = await freePort();
    let databaseUrl: string | undefined;
    if (kind === 'postgres') ({ url: databaseUrl, drop } = await createPostgresDatabase());
    const input = testConfigInput({ server: { port, logLevel: 'warn' } });
    ({ proc, base } = await startServe(input, port, databaseUrl));
  });
  after(async () => {
    await stopCleanly(proc);
    await drop?.();
  });

  it('runs a mix of free, start and pro tasks to success with real images, credits and SSE', async () => {
    const plans = ['free', 'free', 'free', 'start', 'start', 'pro'];
    const submitted = await Promise.all(
      plans.map((plan, i) =>
        postJson(base, '/v1/tasks', {
          user_id: `user-${i % 3}`,
          type: 'photography',
          plan,
          prompt: `portrait ${i}`,
        }),
      ),
    );
    for (const s of submitted) {
      assert.equal(s.status, 202, JSON.stringify(s.body));
      assert.equal(s.body.state, 'queued');
      assert.equal(typeof s.body.position, 'number');
      assert.equal(typeof s.body.eta_seconds, 'number');
    }
    const proId = submitted[5]!.body.id as string;
    const sse = await readSse(`${base}/v1/tasks/${proId}/events`);
    const last = sse[sse.length - 1]!;
    assert.equal(last.event, 'state');
    assert.equal(last.data.state, 'succeeded', 'the SSE stream delivered the final state');
    assert.ok(sse.some((e) => e.event === 'progress'));

    const finished = await waitFor('all tasks to finish', async () => {
      const all = await Promise.all(submitted.map((s) => getJson(base, `/v1/tasks/${s.body.id as string}`)));
      const bodies = all.map((r) => r.body as unknown as TaskBody);
      return bodies.every((b) => b.state !== 'queued' && b.state !== 'running') ? bodies : undefined;
    });
    for (const task of finished) {
      assert.equal(task.state, 'succeeded', JSON.stringify(task));
      assert.equal(task.images.length, task.progress.total);
      assert.deepEqual(
        task.images.map((i) => i.index),
        Array.from({ length: task.progress.total }, (_, i) => i),
      );
      assert.equal(task.progress.done, task.progress.total);
      assert.equal(task.progress.failed, 0);
    }
    // Every image and thumbnail of one task, and a sample of the others, decode as real images.
    const sample = finished.flatMap((t) => (t.id === proId ? t.images : t.images.slice(0, 2)));
    for (const image of sample) {
      const original = Buffer.from(await (await fetch(image.url)).arrayBuffer());
      const meta = await sharp(original).metadata();
      assert.equal(meta.width, image.width);
      assert.equal(meta.height, image.height);
      const thumb = await sharp(
        Buffer.from(await (await fetch(image.thumbnail_url)).arrayBuffer()),
      ).metadata();
      assert.equal(thumb.format, 'webp');
      assert.ok(thumb.width! <= 256 && thumb.height! <= 256);
    }
    // A link with a forged signature is refused.
    const forged = sample[0]!.url.replace(/sig=[0-9a-f]{4}/, 'sig=0000');
    assert.equal((await fetch(forged)).status, 403);

    for (let u = 0; u < 3; u++) {
      const mine = finished.filter((_, i) => i % 3 === u);
      const charged = mine.reduce((n, t) => n + t.credits_charged, 0);
      const refunded = mine.reduce((n, t) => n + t.credits_refunded, 0);
      const credits = await getJson(base, `/v1/users/user-${u}/credits`);
      assert.equal(credits.body.balance, 1000 - charged + refunded);
    }
  });

  it('cancels a queued task and refunds it in full', async () => {
    // A user's third task waits: perUserRunningTasks is 2.
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await postJson(base, '/v1/tasks', { user_id: 'canceler', type: 'photography', plan: 'pro' });
      ids.push(r.body.id as string);
    }
    const res = await postJson(base, `/v1/tasks/${ids[2]!}/cancel`, {});
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const task = await waitFor('the canceled task to end', async () => {
      const r = await getJson(base, `/v1/tasks/${ids[2]!}`);
      return r.body.state === 'canceled' ? (r.body as unknown as TaskBody) : undefined;
    });
    assert.equal(task.credits_refunded, task.credits_charged - task.progress.done);
    const again = await postJson(base, `/v1/tasks/${ids[2]!}/cancel`, {});
    assert.equal(again.status, 409);
    assert.equal((again.body.error as { code: string }).code, 'task_not_cancelable');
  });
});
