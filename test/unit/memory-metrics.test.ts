/**
 * src/telemetry/memory.ts: resident memory by kind of mapping, from /proc/self/smaps. Checked
 * against a hand-written smaps, against the kernel's own total (smaps_rollup), and against
 * glibc: a node process has malloc arenas besides the main one unless MALLOC_ARENA_MAX=1.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { Registry } from 'prom-client';
import { resolveConfig } from '../../src/config/load.ts';
import {
  MEMORY_KINDS,
  readResidentMemory,
  registerMemoryMetrics,
  residentByKind,
} from '../../src/telemetry/memory.ts';
import { createTelemetry } from '../../src/telemetry/telemetry.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const linux = existsSync('/proc/self/smaps');
const glibc = Boolean(
  (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime,
);

function mapping(start: bigint, end: bigint, perms: string, pathname: string, rssKb: number): string {
  const hex = (n: bigint) => n.toString(16).padStart(12, '0');
  return [
    `${hex(start)}-${hex(end)} ${perms} 00000000 00:00 0${pathname ? `                          ${pathname}` : ''}`,
    `Size:             ${(end - start) / 1024n} kB`,
    `Rss:              ${rssKb} kB`,
    `Pss:              ${rssKb} kB`,
    'VmFlags: rd wr mr mw me ac sd',
  ].join('\n');
}

const MiB = 1024n * 1024n;

describe('resident memory by kind', () => {
  it('tells glibc arenas (64 MiB, aligned, read-write then PROT_NONE) from other anonymous mappings', () => {
    const arena = 0x7f0000000000n; // 64 MiB aligned
    const notArena = arena + 128n * MiB; // aligned too, but a 128 MiB reservation
    const text = [
      mapping(0x400000n, 0x500000n, 'r-xp', '/usr/bin/node', 900),
      mapping(0x2000000n, 0x3000000n, 'rw-p', '[heap]', 5000),
      mapping(arena, arena + 3n * MiB, 'rw-p', '', 2048),
      mapping(arena + 3n * MiB, arena + 64n * MiB, '---p', '', 0),
      mapping(notArena, notArena + 3n * MiB, 'rw-p', '', 1000),
      mapping(notArena + 3n * MiB, notArena + 128n * MiB, '---p', '', 0),
      mapping(0x7f9000001000n, 0x7f9000101000n, 'rw-p', '', 700),
      mapping(0x7ffc00000000n, 0x7ffc00021000n, 'rw-p', '[stack]', 132),
      mapping(0x7ffc10000000n, 0x7ffc10002000n, 'r--p', '[vvar]', 8),
    ].join('\n');
    const r = residentByKind(text);
    assert.equal(r.arenas, 1);
    assert.deepEqual(r.bytes, {
      files: 900 * 1024,
      malloc_main: 5000 * 1024,
      malloc_arenas: 2048 * 1024,
      anonymous: (1000 + 700 + 8) * 1024,
      stacks: 132 * 1024,
    });
  });

  it('adds up to the kernel’s own total for this process (smaps_rollup)', { skip: !linux }, () => {
    const r = readResidentMemory()!;
    const rollupKb = Number(/^Rss:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]);
    const sumKb = MEMORY_KINDS.reduce((a, k) => a + r.bytes[k], 0) / 1024;
    // Two readings of a running process: a few pages may come or go between them.
    assert.ok(
      Math.abs(sumKb - rollupKb) < rollupKb * 0.02,
      `${sumKb} kB by kind, ${rollupKb} kB in smaps_rollup`,
    );
    assert.ok(r.bytes.files > 0 && r.bytes.anonymous > 0);
  });

  it('finds the arenas glibc made, and none with MALLOC_ARENA_MAX=1', { skip: !linux || !glibc }, () => {
    // Threadpool work makes the pool's threads allocate; each thread's first malloc takes an
    // arena of its own while there are fewer than the cap (glibc malloc/arena.c, arena_get2).
    const script = `
      import { pbkdf2Sync, pbkdf2 } from 'node:crypto';
      import { residentByKind } from ${JSON.stringify(path.join(ROOT, 'src', 'telemetry', 'memory.ts'))};
      import { readFileSync } from 'node:fs';
      await Promise.all(Array.from({ length: 4 }, () => new Promise((r) => pbkdf2('x', 'y', 1000, 64, 'sha256', r))));
      pbkdf2Sync('x', 'y', 1, 64, 'sha256');
      console.log(residentByKind(readFileSync('/proc/self/smaps', 'utf8')).arenas);`;
    const arenas = (env: NodeJS.ProcessEnv) =>
      Number(
        execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          env,
          cwd: ROOT,
        }).toString(),
      );
    const env = { ...process.env };
    delete env.MALLOC_ARENA_MAX;
    assert.ok(arenas(env) >= 1);
    assert.equal(arenas({ ...env, MALLOC_ARENA_MAX: '1' }), 0);
  });
});

describe('memory metrics', () => {
  it(
    'are part of the server’s registry, one series per kind and the arena count',
    { skip: !linux },
    async () => {
      const noDb = {
        query: () => Promise.reject(new Error('no database here')),
        exec: () => Promise.reject(new Error('no database here')),
      };
      const telemetry = createTelemetry(noDb, resolveConfig({}, {}, 'test'), pino({ level: 'silent' }));
      const text = await telemetry.registry.metrics();
      for (const kind of MEMORY_KINDS)
        assert.match(text, new RegExp(`^darkroom_memory_resident_bytes\\{kind="${kind}"\\} \\d+$`, 'm'));
      assert.match(text, /^darkroom_malloc_arenas \d+$/m);
    },
  );

  it('register on any registry', { skip: !linux }, async () => {
    const registry = new Registry();
    registerMemoryMetrics(registry);
    const json = await registry.getMetricsAsJSON();
    const resident = json.find((m) => m.name === 'darkroom_memory_resident_bytes')!;
    assert.deepEqual(resident.values.map((v) => v.labels.kind).sort(), [...MEMORY_KINDS].sort());
  });
});
