#!/usr/bin/env node
/**
 * Where a V8 CPU profile's time went, for docs/benchmarks.md: self time by owner (darkroom's own
 * modules by folder, each npm package, Node's internals, native calls such as socket writes,
 * idle, garbage collection) and the functions with the most self time.
 *
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx bench/run.ts fairness
 *   node scripts/cpuprofile-top.mjs /tmp/prof/*.cpuprofile            # one table per thread
 *   node scripts/cpuprofile-top.mjs --json --top 15 /tmp/prof/CPU.*.cpuprofile
 *
 * A profile is one thread; `node --cpu-prof` writes one file per thread (main, worker threads).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const json = args.includes('--json');
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args[topAt + 1]) : 20;
const files = args.filter((a, i) => !a.startsWith('--') && !(topAt >= 0 && i === topAt + 1));
if (files.length === 0) {
  process.stderr.write('usage: node scripts/cpuprofile-top.mjs [--json] [--top N] FILE.cpuprofile...\n');
  process.exit(2);
}

/** Who owns a frame: a darkroom folder, an npm package, node internals, or a V8/native bucket. */
function ownerOf(frame) {
  const { url, functionName } = frame;
  if (!url) {
    if (functionName === '(idle)' || functionName === '(garbage collector)' || functionName === '(program)')
      return functionName;
    return '(native)';
  }
  const modules = url.lastIndexOf('node_modules/');
  if (modules >= 0) {
    const rest = url.slice(modules + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) return 'node';
  const src = url.indexOf('/src/');
  if (src >= 0) return `darkroom ${url.slice(src + 1, url.lastIndexOf('/'))}`;
  return path.basename(url);
}

function summarize(file) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const owners = new Map();
  const functions = new Map();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id).callFrame;
    const owner = ownerOf(frame);
    owners.set(owner, (owners.get(owner) ?? 0) + us);
    const where = frame.url ? `${path.basename(frame.url)}:${frame.lineNumber + 1}` : '';
    const name = `${frame.functionName || '(anonymous)'} ${where}`.trim();
    functions.set(name, (functions.get(name) ?? 0) + us);
  }
  const ranked = (m) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({
        name,
        ms: Math.round(us / 1000),
        percent: Number(((us / totalUs) * 100).toFixed(1)),
      }));
  return {
    file: path.basename(file),
    total_ms: Math.round(totalUs / 1000),
    owners: ranked(owners),
    functions: ranked(functions),
  };
}

const summaries = files.map(summarize);
if (json) {
  process.stdout.write(`${JSON.stringify(summaries, null, 2)}\n`);
} else {
  for (const s of summaries) {
    process.stdout.write(`\n${s.file}: ${s.total_ms} ms sampled\n  by owner:\n`);
    for (const o of s.owners) process.stdout.write(`    ${o.percent.toFixed(1).padStart(5)} %  ${o.name}\n`);
    process.stdout.write('  functions (self time):\n');
    for (const f of s.functions)
      process.stdout.write(`    ${f.percent.toFixed(1).padStart(5)} %  ${f.name}\n`);
  }
}
