import { readFileSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';

/**
 * What this process's resident memory is made of, by kind of mapping in /proc/self/smaps
 * (Linux; https://www.kernel.org/doc/html/latest/filesystems/proc.html, "smaps"):
 *
 * - `files`: mapped files (node's code, sharp's libvips, PGlite's data files when mapped).
 * - `malloc_main`: glibc malloc's main arena (`[heap]`, grown with brk).
 * - `malloc_arenas`: glibc's other arenas, one per thread that allocated while the others
 *   were busy, up to 8 per core by default (`MALLOC_ARENA_MAX` lowers the cap). Each is a
 *   64 MiB reservation aligned to 64 MiB (HEAP_MAX_SIZE = 2 × DEFAULT_MMAP_THRESHOLD_MAX on
 *   64-bit, glibc malloc/arena.c), a read-write part followed by a PROT_NONE rest: that shape
 *   is how they are told apart here.
 * - `anonymous`: every other anonymous mapping: the V8 heaps of all threads (the main one's
 *   size is also in `nodejs_heap_size_total_bytes`), WebAssembly memories (PGlite's), and
 *   malloc blocks large enough to get their own mapping.
 * - `stacks`: the main thread's stack (`[stack]`).
 */
export const MEMORY_KINDS = ['files', 'malloc_main', 'malloc_arenas', 'anonymous', 'stacks'] as const;
export type MemoryKind = (typeof MEMORY_KINDS)[number];

export interface ResidentMemory {
  /** Resident bytes by kind. */
  bytes: Record<MemoryKind, number>;
  /** glibc malloc arenas besides the main one. */
  arenas: number;
}

const ARENA_BYTES = 64n * 1024n * 1024n;

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
  rssKb: number;
}

function parseSmaps(text: string): Mapping[] {
  const maps: Mapping[] = [];
  let current: Mapping | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      current = {
        start: BigInt(`0x${head[1]!}`),
        end: BigInt(`0x${head[2]!}`),
        perms: head[3]!,
        path: head[4]!,
        rssKb: 0,
      };
      maps.push(current);
    } else if (current && line.startsWith('Rss:')) {
      current.rssKb = Number(/(\d+)/.exec(line)?.[1] ?? 0);
    }
  }
  return maps;
}

/** Resident memory by kind, from the text of a /proc/PID/smaps. */
export function residentByKind(smaps: string): ResidentMemory {
  const maps = parseSmaps(smaps);
  const kb: Record<MemoryKind, number> = {
    files: 0,
    malloc_main: 0,
    malloc_arenas: 0,
    anonymous: 0,
    stacks: 0,
  };
  let arenas = 0;
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    let kind: MemoryKind = 'anonymous';
    if (m.path === '[heap]') kind = 'malloc_main';
    else if (m.path === '[stack]') kind = 'stacks';
    else if (m.path !== '' && !m.path.startsWith('[')) kind = 'files';
    else if (m.path === '' && m.start % ARENA_BYTES === 0n && m.perms.startsWith('rw')) {
      const next = maps[i + 1];
      const reserved =
        next && next.start === m.end && next.path === '' && next.perms.startsWith('---')
          ? next.end - m.start
          : m.end - m.start;
      if (reserved === ARENA_BYTES) {
        kind = 'malloc_arenas';
        arenas += 1;
      }
    }
    kb[kind] += m.rssKb;
  }
  const bytes = Object.fromEntries(MEMORY_KINDS.map((k) => [k, kb[k] * 1024])) as Record<MemoryKind, number>;
  return { bytes, arenas };
}

/** This process's resident memory by kind, or undefined where /proc/self/smaps does not exist. */
export function readResidentMemory(): ResidentMemory | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return undefined;
  }
  return residentByKind(text);
}

/**
 * `darkroom_memory_resident_bytes{kind}` and `darkroom_malloc_arenas`, read from
 * /proc/self/smaps at each scrape (Linux only; elsewhere the series are absent).
 */
export function registerMemoryMetrics(registry: Registry): void {
  // One reading serves both series of a scrape.
  let reading: { at: number; memory: ResidentMemory | undefined } | undefined;
  const read = () => {
    const now = Date.now();
    if (!reading || now - reading.at > 1000) reading = { at: now, memory: readResidentMemory() };
    return reading.memory;
  };
  new Gauge({
    name: 'darkroom_memory_resident_bytes',
    help: 'Resident memory of this process by kind of mapping (/proc/self/smaps): files, malloc_main, malloc_arenas, anonymous (V8 heaps of all threads, WebAssembly memory, large malloc blocks), stacks.',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const memory = read();
      this.reset();
      if (memory) for (const kind of MEMORY_KINDS) this.set({ kind }, memory.bytes[kind]);
    },
  });
  new Gauge({
    name: 'darkroom_malloc_arenas',
    help: 'glibc malloc arenas of this process besides the main one (each up to 64 MiB; MALLOC_ARENA_MAX caps their number).',
    registers: [registry],
    collect() {
      const memory = read();
      this.reset();
      if (memory) this.set(memory.arenas);
    },
  });
}
