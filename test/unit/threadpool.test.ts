/**
 * bin/threadpool.cjs sizes libuv's threadpool before Node starts it. Measured from inside a child
 * process: six reads of FIFOs that have no writer each hold a pool thread; a file stat then
 * completes only if the pool has a seventh thread (with libuv's default of 4 it would wait
 * until the FIFOs are opened for writing, which the probe does only after its stat answered).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const PROBE = `
import fs from 'node:fs';
const fifos = process.argv.slice(1);
let opened = 0;
for (const fifo of fifos) fs.open(fifo, 'r', (error, fd) => { if (!error) fs.closeSync(fd); opened += 1; });
await fs.promises.stat(process.cwd());
console.log('stat answered with ' + fifos.length + ' pool threads blocked; size ' + process.env.UV_THREADPOOL_SIZE);
// Unblock the readers (a writer's non-blocking open fails until its reader is waiting).
while (opened < fifos.length) {
  for (const fifo of fifos) {
    try { fs.closeSync(fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)); } catch {}
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
}
`;

function runProbe(env: NodeJS.ProcessEnv): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'darkroom-threadpool-'));
  const fifos = Array.from({ length: 6 }, (_, i) => path.join(dir, `fifo${i}`));
  for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
  const child = spawn(
    process.execPath,
    ['--require', path.join(ROOT, 'bin', 'threadpool.cjs'), '--input-type=module', '-e', PROBE, ...fifos],
    { env, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  // A guard against a hang (the failure this test looks for), never a timing check.
  const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      clearTimeout(guard);
      rmSync(dir, { recursive: true, force: true });
      if (code === 0) resolve(out.trim());
      else reject(new Error(`probe ended with ${code ?? signal}: ${out}`));
    });
  });
}

describe('libuv threadpool size', () => {
  it('is 16 when the user set none: a stat answers while six pool threads are blocked', async () => {
    const env = { ...process.env };
    delete env.UV_THREADPOOL_SIZE;
    assert.equal(await runProbe(env), 'stat answered with 6 pool threads blocked; size 16');
  });

  it('keeps a size the user set', async () => {
    assert.match(await runProbe({ ...process.env, UV_THREADPOOL_SIZE: '24' }), /size 24$/);
  });

  it('is set by the darkroom command before anything else it loads', () => {
    const bin = readFileSync(path.join(ROOT, 'bin', 'darkroom.cjs'), 'utf8');
    const code = bin.split('\n').filter((line) => !/^\s*(\/\/|#!|'use strict'|$)/.test(line));
    assert.equal(code[0], "require('./threadpool.cjs');");
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
      bin: Record<string, string>;
      scripts: Record<string, string>;
    };
    assert.equal(pkg.bin.darkroom, 'bin/darkroom.cjs');
    assert.match(pkg.scripts.start!, /^node bin\/darkroom\.cjs /);
    assert.match(pkg.scripts.bench!, /--require \.\/bin\/threadpool\.cjs --import tsx/);
  });
});
