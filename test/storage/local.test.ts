import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppError } from '../../src/errors.ts';
import { createLocalStorage } from '../../src/storage/local.ts';
import type { LocalStorage } from '../../src/storage/local.ts';
import { verifyFileSignature } from '../../src/storage/signing.ts';

const SECRET = 'test-secret';
const NOW_MS = 1_700_000_000_000;

describe('local storage', () => {
  let dir: string;
  let storage: LocalStorage;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'darkroom-local-'));
    storage = createLocalStorage({ dir, signingSecret: SECRET, now: () => NOW_MS });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips put, get and delete under nested keys', async () => {
    const data = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 255]);
    await storage.put('tasks/t1/0001.png', data, 'image/png');
    assert.deepEqual(await storage.get('tasks/t1/0001.png'), data);
    assert.deepEqual(await readFile(path.join(dir, 'tasks/t1/0001.png')), data);
    assert.equal(storage.resolvePath('tasks/t1/0001.png'), path.join(dir, 'tasks/t1/0001.png'));

    await storage.delete('tasks/t1/0001.png');
    await assert.rejects(storage.get('tasks/t1/0001.png'), isCode('file_not_found'));
    await storage.delete('tasks/t1/0001.png'); // deleting twice is fine
  });

  it('overwrites atomically and leaves no temp files behind', async () => {
    await storage.put('over/write.bin', Buffer.from('first'), 'application/octet-stream');
    await storage.put('over/write.bin', Buffer.from('second'), 'application/octet-stream');
    assert.equal((await storage.get('over/write.bin')).toString(), 'second');
    assert.deepEqual(await readdir(path.join(dir, 'over')), ['write.bin']);
  });

  it('asks for a directory once, not for every put into it', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'dirs-once'), signingSecret: SECRET });
    await fresh.put('tasks/t9/0000.png', Buffer.from('a'), 'image/png');
    await fresh.put('tasks/t9/0000.thumb.webp', Buffer.from('b'), 'image/webp');
    await fresh.put('tasks/t9/0001.png', Buffer.from('c'), 'image/png');
    assert.equal(fresh.stats().mkdirs, 1);
    assert.equal(fresh.stats().fileSyncs, 3);
    // The three directories made (the root, tasks, t9) synced in their parents, then t9 after each rename.
    assert.equal(fresh.stats().dirSyncs, 3 + 3);
    await fresh.put('tasks/t10/0000.png', Buffer.from('d'), 'image/png');
    assert.equal(fresh.stats().mkdirs, 2);
    assert.deepEqual((await readdir(path.join(dir, 'dirs-once/tasks/t9'))).sort(), [
      '0000.png',
      '0000.thumb.webp',
      '0001.png',
    ]);
  });

  it('syncs the directory after a rename, one fsync for the puts written together', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'dirs-sync'), signingSecret: SECRET });
    await fresh.put('tasks/t1/0000.png', Buffer.from('a'), 'image/png');
    const made = fresh.stats().dirSyncs;
    assert.equal(made, 3 + 1, 'root, tasks and t1 made (their parents synced), then t1 after the rename');
    await fresh.put('tasks/t1/0001.png', Buffer.from('b'), 'image/png');
    assert.equal(fresh.stats().dirSyncs, made + 1);
    // Started together (a store job's original and thumbnail): the first to rename waits for the
    // others already writing, and one fsync covers every rename.
    await Promise.all([
      fresh.put('tasks/t1/0002.png', Buffer.from('original'), 'image/png'),
      fresh.put('tasks/t1/0002.thumb.webp', Buffer.from('thumbnail'), 'image/webp'),
    ]);
    assert.equal(fresh.stats().dirSyncs, made + 2);
    const keys = Array.from({ length: 8 }, (_, i) => `tasks/t1/${String(i + 3).padStart(4, '0')}.png`);
    await Promise.all(keys.map((key) => fresh.put(key, Buffer.from(key), 'image/png')));
    assert.equal(fresh.stats().dirSyncs, made + 3);
    assert.equal(fresh.stats().fileSyncs, 4 + keys.length);
    for (const key of keys) assert.equal((await fresh.get(key)).toString(), key);
    assert.equal((await fresh.get('tasks/t1/0002.thumb.webp')).toString(), 'thumbnail');
  });

  it('does not hold a directory fsync back for a put that fails', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'dirs-fail'), signingSecret: SECRET });
    await fresh.put('tasks/t1/0000.png', Buffer.from('a'), 'image/png');
    // A directory where the file should go: that put's rename fails after its write.
    await mkdir(path.join(dir, 'dirs-fail/tasks/t1/0001.png'));
    const [ok, failed] = await Promise.allSettled([
      fresh.put('tasks/t1/0002.png', Buffer.from('b'), 'image/png'),
      fresh.put('tasks/t1/0001.png', Buffer.from('c'), 'image/png'),
    ]);
    assert.equal(ok.status, 'fulfilled');
    assert.equal(failed.status, 'rejected');
    assert.equal((await fresh.get('tasks/t1/0002.png')).toString(), 'b');
    assert.deepEqual((await readdir(path.join(dir, 'dirs-fail/tasks/t1'))).sort(), [
      '0000.png',
      '0001.png',
      '0002.png',
    ]);
  });

  it('makes a directory again when it was removed behind its back', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'dirs-gone'), signingSecret: SECRET });
    await fresh.put('work/t1/generate/0000.png', Buffer.from('first'), 'image/png');
    await rm(path.join(dir, 'dirs-gone/work'), { recursive: true });
    await fresh.put('work/t1/generate/0001.png', Buffer.from('second'), 'image/png');
    assert.equal((await fresh.get('work/t1/generate/0001.png')).toString(), 'second');
    assert.deepEqual(await readdir(path.join(dir, 'dirs-gone/work/t1/generate')), ['0001.png']);
  });

  it('moves a file into place without writing it: the same inode, the destination directory synced', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'moves'), signingSecret: SECRET });
    await fresh.put('work/t1/generate/0000.png', Buffer.from('staged'), 'image/png');
    const inode = (await stat(fresh.resolvePath('work/t1/generate/0000.png'))).ino;
    const before = fresh.stats();
    await fresh.move('work/t1/generate/0000.png', 'tasks/t1/0000.png');
    assert.equal((await fresh.get('tasks/t1/0000.png')).toString(), 'staged');
    assert.equal((await stat(fresh.resolvePath('tasks/t1/0000.png'))).ino, inode, 'renamed, not copied');
    await assert.rejects(fresh.get('work/t1/generate/0000.png'), isCode('file_not_found'));
    const after = fresh.stats();
    assert.equal(after.moves, before.moves + 1);
    assert.equal(after.fileSyncs, before.fileSyncs, 'no file written, none synced');
    // tasks and tasks/t1 made (their parents synced), then tasks/t1 after the rename.
    assert.equal(after.dirSyncs, before.dirSyncs + 2 + 1);
    assert.equal(after.mkdirs, before.mkdirs + 1);

    // A move and a put into one directory at once (a store job's original and thumbnail) share its fsync.
    await fresh.put('work/t1/generate/0001.png', Buffer.from('second'), 'image/png');
    const pair = fresh.stats();
    await Promise.all([
      fresh.move('work/t1/generate/0001.png', 'tasks/t1/0001.png'),
      fresh.put('tasks/t1/0001.thumb.webp', Buffer.from('thumb'), 'image/webp'),
    ]);
    assert.equal(fresh.stats().dirSyncs, pair.dirSyncs + 1);
    assert.deepEqual((await readdir(path.join(dir, 'moves/tasks/t1'))).sort(), [
      '0000.png',
      '0001.png',
      '0001.thumb.webp',
    ]);
    assert.deepEqual(await readdir(path.join(dir, 'moves/work/t1/generate')), []);
  });

  it('a move replaces the destination; a missing source is file_not_found and changes nothing', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'moves-replace'), signingSecret: SECRET });
    await fresh.put('tasks/t1/0000.png', Buffer.from('old'), 'image/png');
    await fresh.put('work/t1/generate/0000.png', Buffer.from('new'), 'image/png');
    await fresh.move('work/t1/generate/0000.png', 'tasks/t1/0000.png');
    assert.equal((await fresh.get('tasks/t1/0000.png')).toString(), 'new');
    const before = fresh.stats();
    await assert.rejects(
      fresh.move('work/t1/generate/0000.png', 'tasks/t1/0000.png'),
      isCode('file_not_found'),
    );
    await assert.rejects(
      fresh.move('work/t2/generate/0000.png', 'tasks/t2/0000.png'),
      isCode('file_not_found'),
    );
    assert.equal(fresh.stats().moves, before.moves);
    assert.equal((await fresh.get('tasks/t1/0000.png')).toString(), 'new');
  });

  it('a move makes its destination directory again when it was removed behind its back', async () => {
    const fresh = createLocalStorage({ dir: path.join(dir, 'moves-gone'), signingSecret: SECRET });
    await fresh.put('tasks/t1/0000.png', Buffer.from('a'), 'image/png');
    await fresh.put('work/t1/generate/0001.png', Buffer.from('b'), 'image/png');
    await rm(path.join(dir, 'moves-gone/tasks'), { recursive: true });
    await fresh.move('work/t1/generate/0001.png', 'tasks/t1/0001.png');
    assert.equal((await fresh.get('tasks/t1/0001.png')).toString(), 'b');
    assert.deepEqual(await readdir(path.join(dir, 'moves-gone/tasks/t1')), ['0001.png']);
  });

  it('throws file_not_found for a missing key, and for a directory', async () => {
    await assert.rejects(storage.get('nope/missing.png'), isCode('file_not_found'));
    await storage.put('a/b/c.png', Buffer.from('x'), 'image/png');
    await assert.rejects(storage.get('a/b'), isCode('file_not_found'));
  });

  it('rejects bad keys on every operation', async () => {
    const badKeys = [
      '',
      '/etc/passwd',
      '../secret',
      'a/../../b',
      'a/./b',
      'a//b',
      'a/',
      'a\\b',
      'a b',
      'ü.png',
      '..',
      'a/..',
    ];
    for (const key of badKeys) {
      await assert.rejects(storage.put(key, Buffer.from('x'), 'image/png'), isCode('invalid_input'), key);
      await assert.rejects(storage.get(key), isCode('invalid_input'), key);
      await assert.rejects(storage.delete(key), isCode('invalid_input'), key);
      await assert.rejects(storage.move!(key, 'a/ok.png'), isCode('invalid_input'), key);
      await assert.rejects(storage.move!('a/ok.png', key), isCode('invalid_input'), key);
      await assert.rejects(storage.url(key, 60), isCode('invalid_input'), key);
      assert.throws(() => storage.resolvePath(key), isCode('invalid_input'), key);
    }
  });

  it('returns a signed /v1/files URL that verifies until it expires', async () => {
    const url = await storage.url('tasks/t1/0002.png', 600);
    const parsed = new URL(url, 'http://darkroom.test');
    assert.equal(parsed.pathname, '/v1/files/tasks/t1/0002.png');
    const exp = parsed.searchParams.get('exp') ?? '';
    const sig = parsed.searchParams.get('sig') ?? '';
    assert.equal(Number(exp), NOW_MS / 1000 + 600);
    assert.match(sig, /^[0-9a-f]{64}$/);

    const now = NOW_MS / 1000;
    assert.equal(verifyFileSignature('tasks/t1/0002.png', exp, sig, SECRET, now), true);
    assert.equal(verifyFileSignature('tasks/t1/0002.png', exp, sig, SECRET, now + 600), true);
    assert.equal(verifyFileSignature('tasks/t1/0002.png', exp, sig, SECRET, now + 601), false, 'expired');
  });

  it('rejects tampered signatures, keys, expiries and secrets', async () => {
    const url = new URL(await storage.url('tasks/t1/0003.png', 60), 'http://darkroom.test');
    const exp = url.searchParams.get('exp') ?? '';
    const sig = url.searchParams.get('sig') ?? '';
    const now = NOW_MS / 1000;
    const flipped = (sig[0] === '0' ? '1' : '0') + sig.slice(1);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', exp, flipped, SECRET, now), false);
    assert.equal(verifyFileSignature('tasks/t1/0004.png', exp, sig, SECRET, now), false);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', String(Number(exp) + 1), sig, SECRET, now), false);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', exp, sig, 'other-secret', now), false);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', exp, sig.slice(0, 10), SECRET, now), false);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', `${exp}.5`, sig, SECRET, now), false);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', '', sig, SECRET, now), false);
    assert.equal(verifyFileSignature('../t1/0003.png', exp, sig, SECRET, now), false);
    assert.equal(verifyFileSignature('tasks/t1/0003.png', exp, sig.toUpperCase(), SECRET, now), true);
  });

  it('refuses an empty signing secret and a non-positive lifetime', async () => {
    assert.throws(() => createLocalStorage({ dir, signingSecret: '' }), isCode('invalid_input'));
    await assert.rejects(storage.url('a.png', 0), isCode('invalid_input'));
  });
});

function isCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof AppError && error.code === code;
}
