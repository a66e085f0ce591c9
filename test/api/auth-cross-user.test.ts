import assert from 'node:assert/strict';
import { it } from 'node:test';
import sharp from 'sharp';
import { insertImage } from '../../src/store/images.ts';
import { describeEachDb } from '../helpers/db.ts';
import { bearer, submitBody, useAuthApp, userToken } from '../helpers/auth-app.ts';

async function png(seed: number): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: { r: seed, g: 40, b: 90 } } })
    .png()
    .toBuffer();
}

function multipart(data: Buffer): { payload: Buffer; headers: Record<string, string> } {
  const boundary = '----darkroomtest';
  const payload = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="in.png"\r\ncontent-type: image/png\r\n\r\n`,
    ),
    data,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { payload, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

describeEachDb('auth: a user token never sees another user', (kind) => {
  const t = useAuthApp(kind);
  const A = 'cross-alice';
  const B = 'cross-bob';

  const errorOf = (res: { json(): unknown }) => (res.json() as { error: { code: string } }).error;

  it('answers 404 for another user on every route that takes an id, and leaks nothing', async () => {
    const tokenA = await userToken(t, A);
    const tokenB = await userToken(t, B);
    const submitted = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(tokenA),
      payload: submitBody(A, { order_id: 'secret-order-7', prompt: 'alice private prompt' }),
    });
    assert.equal(submitted.statusCode, 202, submitted.body);
    const taskId = (submitted.json() as { id: string }).id;
    const up = multipart(await png(1));
    const uploaded = await t.app.inject({
      method: 'POST',
      url: '/v1/uploads',
      headers: { ...bearer(tokenA), ...up.headers },
      payload: up.payload,
    });
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const uploadId = (uploaded.json() as { upload_id: string }).upload_id;

    const probes: Array<[string, string, string, string]> = [
      ['GET', `/v1/tasks/${taskId}`, 'task_not_found', 'read'],
      ['GET', `/v1/tasks/${taskId}/events`, 'task_not_found', 'follow'],
      ['POST', `/v1/tasks/${taskId}/cancel`, 'task_not_found', 'cancel'],
      ['GET', `/v1/users/${A}/credits`, 'not_found', 'credits'],
      ['GET', `/v1/uploads/${uploadId}`, 'upload_not_found', 'upload'],
    ];
    for (const [method, url, code, what] of probes) {
      const res = await t.app.inject({ method: method as 'GET', url, headers: bearer(tokenB) });
      assert.equal(res.statusCode, 404, `${what}: ${res.statusCode} ${res.body}`);
      assert.equal(errorOf(res).code, code, what);
      for (const secret of ['secret-order-7', 'alice private prompt', A === url ? '' : 'balance'])
        assert.ok(!res.body.includes(secret), `${what} leaked "${secret}"`);
      // The owner gets the real thing (the stream and cancel are checked below).
      if (what === 'read' || what === 'credits' || what === 'upload') {
        const own = await t.app.inject({ method: 'GET', url, headers: bearer(tokenA) });
        assert.equal(own.statusCode, 200, `${what} for its owner: ${own.body}`);
      }
    }
    // The task is untouched by the other user's cancel.
    const still = await t.app.inject({ url: `/v1/tasks/${taskId}`, headers: bearer(t.appKey) });
    assert.equal((still.json() as { state: string }).state, 'queued');

    // A list never shows another user's tasks, whatever the query asks for.
    const listed = await t.app.inject({ url: `/v1/tasks?user_id=${A}`, headers: bearer(tokenB) });
    assert.equal(listed.statusCode, 200);
    assert.deepEqual((listed.json() as { tasks: unknown[] }).tasks, []);
    const appList = await t.app.inject({ url: `/v1/tasks?user_id=${A}`, headers: bearer(t.appKey) });
    assert.equal((appList.json() as { tasks: unknown[] }).tasks.length, 1);

    // Another user's upload cannot be used as an input, and the answer does not confirm it exists.
    const borrowed = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(tokenB),
      payload: { user_id: B, type: 'photography', plan: 'free', inputs: [{ upload_id: uploadId }] },
    });
    assert.equal(borrowed.statusCode, 422);
    assert.equal(errorOf(borrowed).code, 'invalid_input');
    const missing = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(tokenB),
      payload: { user_id: B, type: 'photography', plan: 'free', inputs: [{ upload_id: 'no-such-upload' }] },
    });
    assert.equal(
      (borrowed.json() as { error: { message: string } }).error.message.replace(uploadId, 'X'),
      (missing.json() as { error: { message: string } }).error.message.replace('no-such-upload', 'X'),
    );
    // Its owner can use it.
    const ownInput = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(tokenA),
      payload: { user_id: A, type: 'photography', plan: 'free', inputs: [{ upload_id: uploadId }] },
    });
    assert.equal(ownInput.statusCode, 202, ownInput.body);

    // The owner cancels, then follows the stream to its final state.
    const canceled = await t.app.inject({
      method: 'POST',
      url: `/v1/tasks/${taskId}/cancel`,
      headers: bearer(tokenA),
    });
    assert.equal(canceled.statusCode, 200);
    const stream = await t.app.inject({ url: `/v1/tasks/${taskId}/events`, headers: bearer(tokenA) });
    assert.equal(stream.statusCode, 200);
    assert.match(stream.body, /event: state\ndata: .*"state":"canceled"/);
  });

  it("serves a user's images only through the signed links in that user's own task view", async () => {
    const tokenA = await userToken(t, A);
    const tokenB = await userToken(t, B);
    const submitted = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(tokenA),
      payload: submitBody(A),
    });
    const taskId = (submitted.json() as { id: string }).id;
    const image = await png(200);
    const key = `tasks/${taskId}/0000.png`;
    await t.ctx.storage.put(key, image, 'image/png');
    await t.ctx.storage.put(`tasks/${taskId}/0000.thumb.webp`, image, 'image/webp');
    await insertImage(t.ctx.db, {
      task_id: taskId,
      index: 0,
      storage_key: key,
      thumb_key: `tasks/${taskId}/0000.thumb.webp`,
      mime: 'image/png',
      width: 8,
      height: 8,
      thumb_width: 8,
      thumb_height: 8,
      bytes: image.length,
      sha256: 'x',
      cached: false,
    });
    const view = await t.app.inject({ url: `/v1/tasks/${taskId}`, headers: bearer(tokenA) });
    const url = new URL((view.json() as { images: Array<{ url: string }> }).images[0]!.url);
    assert.ok(url.searchParams.get('sig') && url.searchParams.get('exp'), 'the link is signed and expiring');
    // The link works without any header (an <img src>), exactly as signed.
    const file = await t.app.inject({ url: url.pathname + url.search });
    assert.equal(file.statusCode, 200);
    assert.deepEqual(file.rawPayload, image);
    // The other user cannot get the link, and cannot make one: an unsigned or altered link is refused.
    const other = await t.app.inject({ url: `/v1/tasks/${taskId}`, headers: bearer(tokenB) });
    assert.equal(other.statusCode, 404);
    for (const bad of [
      url.pathname,
      `${url.pathname}?exp=${url.searchParams.get('exp')}&sig=${'0'.repeat(64)}`,
      `${url.pathname}?exp=${Number(url.searchParams.get('exp')) + 3600}&sig=${url.searchParams.get('sig')}`,
    ]) {
      const res = await t.app.inject({ url: bad, headers: bearer(tokenB) });
      assert.equal(res.statusCode, 403, bad);
      assert.notDeepEqual(res.rawPayload, image);
    }
  });
});
