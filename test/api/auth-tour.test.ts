import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, it } from 'node:test';
import { tempDir } from '../helpers/config.ts';
import { freePort, spawnDarkroom, waitReady, type DarkroomProcess } from '../helpers/process.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The README tour as a new user runs it: `darkroom serve` with no configuration (auth on by
 * default, embedded PGlite, the simulator), the admin key printed on first start, then keys,
 * a user token and the cross-user 404 over real HTTP.
 */
let proc: DarkroomProcess | undefined;
after(async () => {
  proc?.kill('SIGTERM');
  await proc?.exited;
});

it('runs the README tour with auth on: first-start key, user token, another user is a 404', async () => {
  const home = tempDir('darkroom-tour-');
  const port = await freePort();
  proc = spawnDarkroom(['serve', '--home', home, '--port', String(port)], { DARKROOM_ADMIN_KEY: '' });
  const base = `http://127.0.0.1:${port}`;
  await waitReady(base, proc);
  const printed = await waitFor(
    'the first-start banner',
    () => /\n {2}(drk_[A-Za-z0-9_-]{43})\n/.exec(proc!.output())?.[1],
  );
  const file = path.join(home, 'admin-key');
  assert.equal(readFileSync(file, 'utf8').trim(), printed);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.match(proc.output(), new RegExp(`listening on http://(127\\.0\\.0\\.1|localhost):${port}`));

  const call = async (method: string, url: string, credential?: string, body?: unknown) => {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: {
        ...(credential ? { authorization: `Bearer ${credential}` } : {}),
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const task = { type: 'photography', plan: 'free', prompt: 'studio portrait' };
  assert.equal((await call('POST', '/v1/tasks', undefined, { user_id: 'alice', ...task })).status, 401);
  const alice = await call('POST', '/v1/tasks', printed, { user_id: 'alice', order_id: 'order-1', ...task });
  assert.equal(alice.status, 202, JSON.stringify(alice.body));
  const bob = await call('POST', '/v1/tasks', printed, { user_id: 'bob', ...task });
  assert.equal(bob.status, 202);

  const issued = await call('POST', '/v1/users/alice/tokens', printed);
  assert.equal(issued.status, 201);
  const token = issued.body.token as string;
  assert.equal((await call('GET', `/v1/tasks/${bob.body.id as string}`, token)).status, 404);
  const done = await waitFor(
    "alice's task to finish",
    async () => {
      const res = await call('GET', `/v1/tasks/${alice.body.id as string}`, token);
      assert.equal(res.status, 200);
      return res.body.state === 'succeeded' ? res.body : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  const images = done.images as Array<{ url: string }>;
  assert.equal(images.length, 2);
  const png = await fetch(images[0]!.url.replace(/^http:\/\/[^/]+/, base));
  assert.equal(png.status, 200);
  assert.equal(png.headers.get('content-type'), 'image/png');
  const credits = await call('GET', '/v1/users/alice/credits', token);
  assert.deepEqual(credits.body, { user_id: 'alice', balance: 998 });
  assert.equal((await call('GET', '/v1/users/bob/credits', token)).status, 404);
});
