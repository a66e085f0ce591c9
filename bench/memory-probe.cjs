// What a server's resident memory is made of, measured from inside it: loaded with
// `node --require bench/memory-probe.cjs` (or NODE_OPTIONS), which Node also runs in every
// worker thread. Each thread samples its own V8 heap (v8.getHeapStatistics) and the
// WebAssembly memories it created (PGlite's `new WebAssembly.Memory`, whose buffer never
// shrinks); the main thread gathers them on a BroadcastChannel, reads /proc/self/status
// and, at each new high of its RSS, /proc/self/smaps by kind of mapping (with the server's
// own classifier, dist/telemetry/memory.js, as `darkroom_memory_resident_bytes` reports it).
// It writes the breakdown taken at the highest RSS it saw to MEMORY_PROBE_OUT (JSON), at each
// new high (at most once a second) and at exit. Measurement only: bench/load.ts starts the
// server with it (bench/memory.ts; LOAD_MEMORY=0 leaves it out).
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');
const v8 = require('node:v8');
const { isMainThread, threadId, BroadcastChannel } = require('node:worker_threads');

const CHANNEL = 'darkroom-memory-probe';
const EVERY_MS = Number(process.env.MEMORY_PROBE_EVERY_MS ?? 200);
const MB = 1024 * 1024;
const round = (bytes) => Math.round((bytes / MB) * 10) / 10;

const memories = [];
const NativeMemory = WebAssembly.Memory;
WebAssembly.Memory = new Proxy(NativeMemory, {
  construct(target, args, newTarget) {
    const memory = Reflect.construct(target, args, newTarget);
    memories.push(new WeakRef(memory));
    return memory;
  },
});

function isolateSample() {
  const h = v8.getHeapStatistics();
  const u = process.memoryUsage();
  let wasm = 0;
  for (const ref of memories) wasm += ref.deref()?.buffer.byteLength ?? 0;
  return {
    thread: threadId,
    heap_total: h.total_heap_size,
    heap_committed: h.total_physical_size,
    heap_used: h.used_heap_size,
    heap_limit: h.heap_size_limit,
    malloced: h.malloced_memory,
    peak_malloced: h.peak_malloced_memory,
    external: u.external,
    array_buffers: u.arrayBuffers,
    wasm,
  };
}

function status() {
  const text = readFileSync('/proc/self/status', 'utf8');
  const kb = (name) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(text)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), threads: kb('Threads') };
}

const channel = new BroadcastChannel(CHANNEL);
if (!isMainThread) {
  const timer = setInterval(() => channel.postMessage(isolateSample()), EVERY_MS);
  timer.unref();
  channel.unref();
} else {
  const out = process.env.MEMORY_PROBE_OUT;
  const threads = new Map();
  channel.onmessage = (event) => threads.set(event.data.thread, event.data);
  channel.unref();
  let residentByKind;
  import(pathToFileURL(path.join(__dirname, '..', 'dist', 'telemetry', 'memory.js')).href).then(
    (m) => (residentByKind = m.residentByKind),
    (error) => process.stderr.write(`memory probe: no smaps breakdown (${error.message})\n`),
  );
  let best;
  let lastWrite = 0;
  const write = () => {
    if (out && best) writeFileSync(out, JSON.stringify(best));
  };
  const smapsByKind = () => {
    if (!residentByKind) return undefined;
    const r = residentByKind(readFileSync('/proc/self/smaps', 'utf8'));
    return {
      ...Object.fromEntries(Object.entries(r.bytes).map(([k, v]) => [`${k}_mb`, round(v)])),
      malloc_arenas: r.arenas,
    };
  };
  const sample = () => {
    const s = status();
    if (best && s.rss <= best.rss_kb + 2048) return;
    const isolates = [isolateSample(), ...threads.values()].map((i) => ({
      thread: i.thread,
      heap_used_mb: round(i.heap_used),
      heap_total_mb: round(i.heap_total),
      heap_committed_mb: round(i.heap_committed),
      heap_limit_mb: round(i.heap_limit),
      v8_malloced_mb: round(i.malloced),
      external_mb: round(i.external),
      array_buffers_mb: round(i.array_buffers),
      wasm_mb: round(i.wasm),
    }));
    const sum = (key) => Math.round(isolates.reduce((a, i) => a + i[key], 0) * 10) / 10;
    const smaps = smapsByKind();
    best = {
      rss_kb: s.rss,
      rss_mb: Math.round(s.rss / 102.4) / 10,
      threads: s.threads,
      at_s: Math.round(process.uptime()),
      isolates,
      heap_committed_mb: sum('heap_committed_mb'),
      heap_used_mb: sum('heap_used_mb'),
      wasm_mb: sum('wasm_mb'),
      array_buffers_mb: sum('array_buffers_mb'),
      smaps,
      // Anonymous memory that is neither a V8 heap nor WebAssembly memory: malloc blocks with
      // a mapping of their own (large buffers, sharp's images), V8's code and zone reservations.
      ...(smaps
        ? {
            other_anonymous_mb:
              Math.round((smaps.anonymous_mb - sum('heap_committed_mb') - sum('wasm_mb')) * 10) / 10,
          }
        : {}),
    };
    const now = Date.now();
    if (now - lastWrite > 1000) {
      lastWrite = now;
      write();
    }
  };
  setInterval(sample, EVERY_MS).unref();
  process.on('exit', () => {
    sample();
    write();
  });
}
