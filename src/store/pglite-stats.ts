import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { PGlite } from './pglite.ts';

/**
 * Per SQL text, what PGlite spent on it inside its thread: runs, the time its query held
 * PGlite's query lock (parse to result, PGlite's JavaScript included) and the part of it spent in
 * PostgreSQL's WebAssembly (`execProtocolRawSync`). Diagnostics for benchmarks only: on when
 * `DARKROOM_PGLITE_STATS` names a file, written when the database closes. A statement is known by
 * the text of its Parse message ('P') or simple Query ('Q'), which the wire bytes carry.
 */
export interface StatementStats {
  runs: number;
  heldMs: number;
  wasmMs: number;
  wasmCalls: number;
  /** WebAssembly time by the frontend message's tag (P parse, B bind: planning, E execute…). */
  byTag: Record<string, number>;
}

const decoder = new TextDecoder();

const named = new Map<string, string>();

/**
 * The SQL text a frontend message starts (Parse: name, then text; Query: text; Bind of a named
 * statement: the text its Parse named), or undefined (the statement's other messages).
 */
function sqlOf(message: Uint8Array): string | undefined {
  const tag = message[0];
  if (tag === 0x42) {
    const portalEnd = message.indexOf(0, 5);
    const name = decoder.decode(message.subarray(portalEnd + 1, message.indexOf(0, portalEnd + 1)));
    return name ? named.get(name) : undefined;
  }
  if (tag !== 0x50 && tag !== 0x51) return undefined;
  let start = 5;
  let name = '';
  if (tag === 0x50) {
    const nameEnd = message.indexOf(0, start);
    name = decoder.decode(message.subarray(start, nameEnd));
    start = nameEnd + 1;
  }
  const sql = decoder.decode(message.subarray(start, message.indexOf(0, start)));
  if (name) {
    named.set(name, sql);
    return undefined; // counted at its Binds
  }
  return sql;
}

export function instrumentPglite(pglite: PGlite, file: string): () => void {
  const stats = new Map<string, StatementStats>();
  const busy = { start: performance.now(), heldMs: 0 };
  let current: StatementStats | undefined;
  const entry = (sql: string) => {
    const key = sql.replace(/\s+/g, ' ').trim().slice(0, 160);
    let s = stats.get(key);
    if (!s) stats.set(key, (s = { runs: 0, heldMs: 0, wasmMs: 0, wasmCalls: 0, byTag: {} }));
    return s;
  };
  const raw = pglite.execProtocolRawSync.bind(pglite);
  pglite.execProtocolRawSync = (message: Uint8Array) => {
    const sql = sqlOf(message);
    if (sql !== undefined) {
      current = entry(sql);
      current.runs++;
    }
    const t0 = performance.now();
    try {
      return raw(message);
    } finally {
      if (current) {
        const ms = performance.now() - t0;
        current.wasmMs += ms;
        current.wasmCalls++;
        const tag = String.fromCharCode(message[0] ?? 0);
        current.byTag[tag] = (current.byTag[tag] ?? 0) + ms;
      }
    }
  };
  const exclusive = pglite._runExclusiveQuery.bind(pglite);
  pglite._runExclusiveQuery = <T>(fn: () => Promise<T>) =>
    exclusive(async () => {
      const t0 = performance.now();
      current = undefined;
      try {
        return await fn();
      } finally {
        const ms = performance.now() - t0;
        busy.heldMs += ms;
        const ran = current as StatementStats | undefined;
        if (ran) ran.heldMs += ms;
        current = undefined;
      }
    });
  return () => {
    const rows = [...stats.entries()].map(([sql, s]) => ({ sql, ...s })).sort((a, b) => b.heldMs - a.heldMs);
    writeFileSync(
      file,
      JSON.stringify(
        {
          wallMs: performance.now() - busy.start,
          heldMs: busy.heldMs,
          eventLoop: performance.eventLoopUtilization(),
          statements: rows,
        },
        null,
        1,
      ),
    );
  };
}
