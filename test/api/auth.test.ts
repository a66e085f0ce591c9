import assert from 'node:assert/strict';
import { statSync, readFileSync } from 'node:fs';
import { it } from 'node:test';
import { decodeJwt, jwtVerify } from 'jose';
import { bootstrapKeys, tokenSecretOf } from '../../src/api/auth/bootstrap.ts';
import { scope } from '../../src/api/auth/scope.ts';
import { hashApiKey } from '../../src/api/auth/keys.ts';
import { listApiKeys, revokeApiKey } from '../../src/store/api-keys.ts';
import { createApiKey } from '../../src/api/auth/manage.ts';
import { describeEachDb } from '../helpers/db.ts';
import { bearer, submitBody, useAuthApp, userToken } from '../helpers/auth-app.ts';

describeEachDb('auth: API keys, scopes and user tokens', (kind) => {
  const t = useAuthApp(kind);

  const code = (res: { json(): unknown }) => (res.json() as { error: { code: string } }).error.code;

  it('answers 401 without a valid key, and lets public routes through', async () => {
    for (const headers of [
      {},
      { authorization: 'Basic dXNlcjpwYXNz' },
      { authorization: 'Bearer' },
      bearer('drk_notakeyatallnotakeyatallnotakeyatall0000'),
      bearer('a.b.c'),
    ]) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/tasks', headers });
      assert.equal(res.statusCode, 401, JSON.stringify(headers));
      assert.equal(code(res), 'unauthorized');
    }
    assert.equal((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    // A link without a signature is refused by its own check, not by auth.
    const file = await t.app.inject({ method: 'GET', url: '/v1/files/tasks/x/0000.png' });
    assert.equal(file.statusCode, 403);
    // Unknown routes stay 404 with or without a key.
    assert.equal((await t.app.inject({ method: 'GET', url: '/v1/nope' })).statusCode, 404);
  });

  it('accepts app and admin keys on user and app routes, and a user token only on user routes', async () => {
    const token = await userToken(t, 'scope-user');
    for (const key of [t.appKey, t.adminKey, token]) {
      const res = await t.app.inject({ method: 'GET', url: '/v1/tasks', headers: bearer(key) });
      assert.equal(res.statusCode, 200);
    }
    // Issuing tokens needs an app (or admin) key.
    const byToken = await t.app.inject({
      method: 'POST',
      url: '/v1/users/scope-user/tokens',
      headers: bearer(token),
      payload: {},
    });
    assert.equal(byToken.statusCode, 403);
    assert.equal(code(byToken), 'forbidden');
    assert.ok(await userToken(t, 'scope-user', t.adminKey));
  });

  it('keeps admin routes (and any route that declares no scope) to admin keys', async () => {
    const app = t.app;
    // Routes cannot be added to a started app; build a sibling with the same hook to test the default.
    const { buildApp } = await import('../../src/api/app.ts');
    const sibling = await buildApp(t.ctx, { signingSecret: 's', now: t.clock.now });
    sibling.get('/undeclared', async () => ({ ok: true }));
    sibling.get('/declared-admin', scope('admin'), async () => ({ ok: true }));
    try {
      const token = await userToken(t, 'scope-user');
      for (const url of ['/undeclared', '/declared-admin']) {
        assert.equal((await sibling.inject({ url })).statusCode, 401);
        assert.equal((await sibling.inject({ url, headers: bearer(token) })).statusCode, 403);
        const byApp = await sibling.inject({ url, headers: bearer(t.appKey) });
        assert.equal(byApp.statusCode, 403);
        assert.equal(code(byApp), 'forbidden');
        assert.equal((await sibling.inject({ url, headers: bearer(t.adminKey) })).statusCode, 200);
      }
    } finally {
      await sibling.close();
    }
    assert.ok(app);
  });

  it('stores only a hash of each key, and a revoked key (and its tokens) stop working', async () => {
    const created = await createApiKey(t.ctx.db, 'app', 'to revoke');
    assert.match(created.key, /^drk_[A-Za-z0-9_-]{43}$/);
    assert.equal(created.id, created.key.slice(0, 12));
    const { rows } = await t.ctx.db.query<Record<string, unknown>>('SELECT * FROM api_keys WHERE id = $1', [
      created.id,
    ]);
    assert.equal(rows[0]!.key_hash, hashApiKey(created.key));
    assert.ok(!JSON.stringify(rows).includes(created.key), 'the key itself is stored');

    const token = await userToken(t, 'revoke-user', created.key);
    assert.equal((await t.app.inject({ url: '/v1/tasks', headers: bearer(created.key) })).statusCode, 200);
    assert.ok(await revokeApiKey(t.ctx.db, created.id));
    const res = await t.app.inject({ url: '/v1/tasks', headers: bearer(created.key) });
    assert.equal(res.statusCode, 401);
    assert.match((res.json() as { error: { message: string } }).error.message, /revoked/);
    const byToken = await t.app.inject({ url: '/v1/tasks', headers: bearer(token) });
    assert.equal(byToken.statusCode, 401);
    assert.match((byToken.json() as { error: { message: string } }).error.message, /revoked/);
    const listed = (await listApiKeys(t.ctx.db)).find((k) => k.id === created.id)!;
    assert.ok(listed.revoked_at instanceof Date);
  });

  it('logs rejected credentials by fingerprint, never the credential', async () => {
    const created = await createApiKey(t.ctx.db, 'app', 'logged');
    await revokeApiKey(t.ctx.db, created.id);
    const bogus = 'drk_bogusbogusbogusbogusbogusbogusbogusbogus123';
    await t.app.inject({ url: '/v1/tasks', headers: bearer(created.key) });
    await t.app.inject({ url: '/v1/tasks', headers: bearer(bogus) });
    const logs = t.logs();
    assert.ok(!logs.includes(created.key), 'a revoked key was logged');
    assert.ok(!logs.includes(bogus), 'an unknown key was logged');
    assert.ok(!logs.includes(created.key.slice(4, 20)), 'part of a key was logged');
    assert.match(logs, new RegExp(`revoked key ${created.id}`));
    assert.match(logs, new RegExp(hashApiKey(bogus).slice(0, 12)));
  });

  it('issues HS256 user tokens that expire, verified independently with the token secret', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: '/v1/users/tok-user/tokens',
      headers: bearer(t.appKey),
      payload: { ttl_seconds: 60 },
    });
    assert.equal(res.statusCode, 201);
    const body = res.json() as { token: string; expires_at: string; user_id: string };
    assert.equal(body.user_id, 'tok-user');
    assert.equal(
      Date.parse(body.expires_at),
      t.clock.now().getTime() - (t.clock.now().getTime() % 1000) + 60_000,
    );
    const claims = decodeJwt(body.token);
    assert.equal(claims.sub, 'tok-user');
    await jwtVerify(body.token, await tokenSecretOf(t.ctx), { currentDate: t.clock.now() });
    // A forged token (signed with another secret) and an altered one are refused.
    const [h, p] = body.token.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...claims, sub: 'someone-else' })).toString(
      'base64url',
    );
    for (const bad of [`${h}.${forgedPayload}.${body.token.split('.')[2]}`, `${h}.${p}.AAAA`]) {
      assert.equal((await t.app.inject({ url: '/v1/tasks', headers: bearer(bad) })).statusCode, 401);
    }
    assert.equal((await t.app.inject({ url: '/v1/tasks', headers: bearer(body.token) })).statusCode, 200);
    t.clock.advance(61_000);
    const expired = await t.app.inject({ url: '/v1/tasks', headers: bearer(body.token) });
    assert.equal(expired.statusCode, 401);
    assert.match((expired.json() as { error: { message: string } }).error.message, /expired/);
    // Longer than the configured lifetime is refused.
    const tooLong = await t.app.inject({
      method: 'POST',
      url: '/v1/users/tok-user/tokens',
      headers: bearer(t.appKey),
      payload: { ttl_seconds: t.ctx.config.auth.userTokenTtlSeconds + 1 },
    });
    assert.equal(tooLong.statusCode, 400);
  });

  it('lets a user token submit only as its user, and only keys create users', async () => {
    const token = await userToken(t, 'sub-user');
    const own = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(token),
      payload: submitBody('sub-user'),
    });
    assert.equal(own.statusCode, 202, own.body);
    const other = await t.app.inject({
      method: 'POST',
      url: '/v1/tasks',
      headers: bearer(token),
      payload: submitBody('someone-else'),
    });
    assert.equal(other.statusCode, 403);
    const { rows } = await t.ctx.db.query('SELECT 1 FROM users WHERE id = $1', ['someone-else']);
    assert.equal(rows.length, 0, 'a token created a user');
    // Issuing the token created the user with the initial grant, once.
    const ledger = await t.ctx.db.query<{ reason: string }>(
      `SELECT reason FROM credit_ledger WHERE user_id = 'sub-user' ORDER BY id`,
    );
    assert.deepEqual(
      ledger.rows.map((r) => r.reason),
      ['grant', 'charge'],
    );
  });

  it('bootstraps the first admin key once, into a 0600 file, and DARKROOM_ADMIN_KEY as given', async () => {
    // This database already has keys: no first key.
    assert.equal(await bootstrapKeys(t.ctx), undefined);
    const envKey = 'an-operator-chosen-admin-key-0123456789';
    const ctx = { ...t.ctx, config: { ...t.ctx.config, auth: { ...t.ctx.config.auth, adminKey: envKey } } };
    await bootstrapKeys(ctx);
    await bootstrapKeys(ctx); // idempotent
    const res = await t.app.inject({ url: '/v1/tasks', headers: bearer(envKey) });
    assert.equal(res.statusCode, 200);
    assert.equal((await listApiKeys(t.ctx.db)).filter((k) => k.id === 'env-admin').length, 1);
  });
});

describeEachDb('auth: first start', (kind) => {
  const t = useAuthApp(kind);
  it('creates one admin key on an empty database, keeps it 0600 in the data dir', async () => {
    await t.ctx.db.query('DELETE FROM api_keys');
    const [a, b] = await Promise.all([bootstrapKeys(t.ctx), bootstrapKeys(t.ctx)]);
    const first = a ?? b;
    assert.ok(first && !(a && b), 'exactly one start creates the key');
    assert.equal(statSync(first.file).mode & 0o777, 0o600);
    assert.equal(readFileSync(first.file, 'utf8').trim(), first.key);
    const keys = await listApiKeys(t.ctx.db);
    assert.equal(keys.length, 1);
    assert.equal(keys[0]!.scope, 'admin');
    assert.equal((await t.app.inject({ url: '/v1/tasks', headers: bearer(first.key) })).statusCode, 200);
    assert.equal(await bootstrapKeys(t.ctx), undefined, 'a second start creates nothing');
  });
});
