/**
 * `darkroom keys create | list | revoke` as an operator runs them: the real CLI (bin/darkroom.cjs)
 * in child processes against a real PostgreSQL database, and the keys used over real HTTP on a
 * server of the same database.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { resolveConfig } from '../../src/config/load.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { testConfigInput } from '../helpers/config.ts';
import { spawnDarkroom, writeConfigFile } from '../helpers/process.ts';

interface Ran {
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Runs `darkroom <args> --config <file>` to its end. */
async function darkroom(file: string, ...args: string[]): Promise<Ran> {
  const proc = spawnDarkroom([...args, '--config', file]);
  let stdout = '';
  let stderr = '';
  proc.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await proc.exited;
  return { code, stdout, stderr };
}

const lines = (out: string) =>
  out
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('darkroom keys on PostgreSQL', { skip: PG_URL ? false : 'no PostgreSQL answers' }, () => {
  let file: string;
  let server: RunningServer;
  let drop: (() => Promise<void>) | undefined;
  let base: string;

  before(async () => {
    const created = await createPostgresDatabase();
    drop = created.drop;
    const input = testConfigInput({ auth: { enabled: true }, database: { url: created.url } });
    file = writeConfigFile(input);
    server = await startServer(resolveConfig(input, {}, 'test'), {
      roles: ['api'],
      log: pino({ level: 'silent' }),
    });
    base = server.url!;
  });
  after(async () => {
    await server?.stop();
    await drop?.();
  });

  const get = async (path: string, key: string) =>
    fetch(`${base}${path}`, { headers: { authorization: `Bearer ${key}` } });

  it('prints a key once, lists it without the key, and revoking it makes it 401', async () => {
    const create = await darkroom(file, 'keys', 'create', '--scope', 'app', '--name', 'shop-backend');
    assert.equal(create.code, 0, create.stderr);
    const [made] = lines(create.stdout) as Array<{ id: string; key: string; scope: string; name: string }>;
    assert.ok(made);
    assert.match(made.key, /^drk_[A-Za-z0-9_-]{43}$/);
    assert.equal(made.key.slice(0, made.id.length), made.id, 'the id is the key’s public prefix');
    assert.equal(made.scope, 'app');
    assert.equal(made.name, 'shop-backend');
    assert.match(create.stderr, /cannot be shown again/);

    const list = await darkroom(file, 'keys', 'list');
    assert.equal(list.code, 0, list.stderr);
    assert.ok(!list.stdout.includes(made.key), 'list never prints a key');
    const listed = lines(list.stdout).find((k) => k.id === made.id);
    assert.deepEqual(
      { ...listed, created_at: typeof listed?.created_at },
      {
        id: made.id,
        name: 'shop-backend',
        scope: 'app',
        webhook_url: null,
        created_at: 'string',
        last_used_at: null,
        revoked_at: null,
      },
    );

    assert.equal((await get('/v1/tasks', made.key)).status, 200);
    assert.equal((await get('/v1/admin/tasks', made.key)).status, 403, 'an app key is no admin key');
    assert.equal((await get('/v1/tasks', `${made.key.slice(0, -1)}x`)).status, 401);

    const revoke = await darkroom(file, 'keys', 'revoke', made.id);
    assert.equal(revoke.code, 0, revoke.stderr);
    assert.deepEqual(lines(revoke.stdout), [{ id: made.id, revoked: true }]);
    const refused = await get('/v1/tasks', made.key);
    assert.equal(refused.status, 401);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'unauthorized');
    const after = lines((await darkroom(file, 'keys', 'list')).stdout).find((k) => k.id === made.id);
    assert.equal(typeof after?.revoked_at, 'string');

    const again = await darkroom(file, 'keys', 'revoke', made.id);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no active key has the id/);
  });

  it('keeps a checked default webhook URL with a key, and refuses a blocked address', async () => {
    const refused = await darkroom(
      file,
      'keys',
      'create',
      '--name',
      'metadata',
      '--webhook-url',
      'http://169.254.169.254/latest',
    );
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /webhook_url_forbidden/);
    assert.equal(refused.stdout, '');
    assert.ok(!lines((await darkroom(file, 'keys', 'list')).stdout).some((k) => k.name === 'metadata'));

    const url = 'https://shop.example/hooks/darkroom';
    const create = await darkroom(file, 'keys', 'create', '--name', 'shop', '--webhook-url', url);
    assert.equal(create.code, 0, create.stderr);
    const [made] = lines(create.stdout) as Array<{ id: string; webhook_url: string }>;
    assert.equal(made!.webhook_url, url);
    const listed = lines((await darkroom(file, 'keys', 'list')).stdout).find((k) => k.id === made!.id);
    assert.equal(listed?.webhook_url, url);
  });

  it('creates an admin key that reaches admin routes', async () => {
    const create = await darkroom(file, 'keys', 'create', '--scope', 'admin', '--name', 'ops');
    assert.equal(create.code, 0, create.stderr);
    const [made] = lines(create.stdout) as Array<{ key: string }>;
    assert.equal((await get('/v1/admin/tasks', made!.key)).status, 200);
  });
});
