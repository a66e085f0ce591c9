import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError } from '../../src/errors.ts';
import { createStorage } from '../../src/storage/index.ts';
import type { Storage } from '../../src/storage/types.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import type { TestS3Server } from '../helpers/s3-server.ts';

describe('s3 storage against a local S3-compatible server', () => {
  let server: TestS3Server;
  let storage: Storage;

  before(async () => {
    server = await startS3Server();
    storage = await s3Storage(server);
  });
  after(async () => {
    await storage.close?.();
    await server.stop();
  });

  it('round-trips put, get and delete', async () => {
    const data = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]);
    await storage.put('tasks/t1/0001.png', data, 'image/png');
    assert.deepEqual(await storage.get('tasks/t1/0001.png'), data);

    await storage.delete('tasks/t1/0001.png');
    await assert.rejects(storage.get('tasks/t1/0001.png'), isCode('file_not_found'));
    await storage.delete('tasks/t1/0001.png'); // deleting twice is fine
  });

  it('throws file_not_found for a key never stored', async () => {
    await assert.rejects(storage.get('never/stored.png'), isCode('file_not_found'));
  });

  it('rejects bad keys before calling the server', async () => {
    for (const key of ['/abs.png', '../up.png', 'a/../b.png', 'a b.png']) {
      await assert.rejects(storage.put(key, Buffer.from('x'), 'image/png'), isCode('invalid_input'), key);
      await assert.rejects(storage.url(key, 60), isCode('invalid_input'), key);
    }
  });

  it('returns a presigned URL that plain fetch can download, with the stored content type', async () => {
    const data = Buffer.from('presigned bytes');
    await storage.put('tasks/t1/0002.png', data, 'image/png');
    const url = await storage.url('tasks/t1/0002.png', 300);
    assert.ok(url.startsWith(`${server.endpoint}/${server.bucket}/tasks/t1/0002.png?`), url);
    assert.match(url, /X-Amz-Expires=300/);

    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), data);
  });

  it('refuses a presigned URL whose signature was tampered with', async () => {
    await storage.put('tasks/t1/0003.png', Buffer.from('x'), 'image/png');
    const url = new URL(await storage.url('tasks/t1/0003.png', 300));
    url.pathname = url.pathname.replace('0003', '0002');
    const response = await fetch(url);
    await response.arrayBuffer();
    assert.equal(response.status, 403);
  });

  it('refuses an expired presigned URL', async () => {
    await storage.put('tasks/t1/0004.png', Buffer.from('soon gone'), 'image/png');
    const url = await storage.url('tasks/t1/0004.png', 1);
    // X-Amz-Date has one-second resolution, so two seconds are needed to be surely past it.
    await sleep(2100);
    const response = await fetch(url);
    const body = await response.text();
    assert.equal(response.status, 403);
    assert.match(body, /expired/i);
  });

  it('clamps presigned lifetimes to urlExpirySeconds', async () => {
    const capped = await s3Storage(server, { urlExpirySeconds: 120 });
    try {
      assert.match(await capped.url('tasks/t1/0005.png', 3600), /X-Amz-Expires=120(&|$)/);
      assert.match(await capped.url('tasks/t1/0005.png', 30), /X-Amz-Expires=30(&|$)/);
    } finally {
      await capped.close?.();
    }
  });

  it('returns publicBaseUrl/key when a public base URL is configured', async () => {
    const publicStorage = await s3Storage(server, { publicBaseUrl: 'https://cdn.example.com/images/' });
    try {
      assert.equal(
        await publicStorage.url('tasks/t1/0006.png', 60),
        'https://cdn.example.com/images/tasks/t1/0006.png',
      );
    } finally {
      await publicStorage.close?.();
    }
  });

  it('reports wrong credentials as an error, not as a missing file', async () => {
    const wrong = await s3Storage(server, { secretAccessKey: 'not-the-secret' });
    try {
      await assert.rejects(
        wrong.put('tasks/t1/0007.png', Buffer.from('x'), 'image/png'),
        (error: unknown) => {
          return error instanceof Error && !(error instanceof AppError);
        },
      );
    } finally {
      await wrong.close?.();
    }
  });
});

function s3Storage(
  server: TestS3Server,
  overrides: { publicBaseUrl?: string; urlExpirySeconds?: number; secretAccessKey?: string } = {},
): Promise<Storage> {
  return createStorage({
    driver: 's3',
    bucket: server.bucket,
    endpoint: server.endpoint,
    region: server.region,
    accessKeyId: server.accessKeyId,
    secretAccessKey: server.secretAccessKey,
    forcePathStyle: true,
    ...overrides,
  });
}

function isCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof AppError && error.code === code;
}
