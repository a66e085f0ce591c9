/**
 * The load bench's memory breakdown (LOAD_MEMORY=0 turns it off): the server starts with
 * bench/memory-probe.cjs preloaded, which writes what its RSS was made of at its highest
 * (each thread's V8 heap, WebAssembly memory, /proc/self/smaps by kind) to a file read here.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export interface MemoryProbe {
  /** Arguments for `node` before the entry script (with LOAD_NODE_FLAGS, space-separated: experiments). */
  nodeArgs: string[];
  env: Record<string, string>;
  /** The breakdown at the highest RSS the server reached so far, or undefined without a probe. */
  read(): unknown;
}

export function memoryProbe(dir: string): MemoryProbe {
  const flags = process.env.LOAD_NODE_FLAGS?.split(' ').filter(Boolean) ?? [];
  if (process.env.LOAD_MEMORY === '0') return { nodeArgs: flags, env: {}, read: () => undefined };
  const out = path.join(dir, `memory-${Date.now()}.json`);
  return {
    nodeArgs: [...flags, '--require', path.join(import.meta.dirname, 'memory-probe.cjs')],
    env: { MEMORY_PROBE_OUT: out },
    read: () => (existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as unknown) : undefined),
  };
}
