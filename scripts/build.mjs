#!/usr/bin/env node
// Compiles src/ to dist/ with tsc (tsconfig.build.json) and records which sources it was built
// from (bin/build-state.js), so the launcher runs dist/ only while it matches src/.
//
// Usage: node scripts/build.mjs [--if-stale] [--optional]
//   --if-stale  do nothing when dist/ is already built from the current sources (`npm start`)
//   --optional  without TypeScript installed (npm install --omit=dev), say so and succeed:
//               darkroom then runs its sources through tsx (`npm install`'s prepare step)
//
// tsc writes to a fresh directory that replaces dist/ only once the build succeeded, so a
// failed or concurrent build never leaves a half-written dist/ for the launcher to run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { DIST, HASH_FILE, ROOT, distIsCurrent, sourceHash } from '../bin/build-state.js';

const args = process.argv.slice(2);
if (args.includes('--if-stale') && distIsCurrent()) process.exit(0);

let tsc;
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
} catch {
  if (args.includes('--optional')) {
    console.log('darkroom build: TypeScript is not installed; darkroom will run its sources through tsx.');
    process.exit(0);
  }
  console.error('darkroom build: TypeScript is not installed (npm install, with dev dependencies).');
  process.exit(1);
}

// Hashed before compiling: a source edited during the build makes the result stale, not current.
const hash = sourceHash();
const out = mkdtempSync(path.join(ROOT, 'dist.tmp-'));
const result = spawnSync(
  process.execPath,
  [tsc, '-p', path.join(ROOT, 'tsconfig.build.json'), '--outDir', out],
  {
    stdio: 'inherit',
  },
);
if (result.status !== 0) {
  rmSync(out, { recursive: true, force: true });
  console.error('darkroom build: tsc failed; dist/ is unchanged.');
  process.exit(1);
}
writeFileSync(path.join(out, HASH_FILE), `${hash}\n`);
const old = `${out.replace('dist.tmp-', 'dist.old-')}`;
for (let attempt = 0; ; attempt++) {
  try {
    renameSync(out, DIST);
    break;
  } catch (error) {
    // dist/ exists (or another build just put one there): move it aside, then try again.
    if (attempt > 5 || !['ENOTEMPTY', 'EEXIST'].includes(error.code)) throw error;
    try {
      renameSync(DIST, old);
    } catch (moveError) {
      if (moveError.code !== 'ENOENT') throw moveError;
    }
  }
}
rmSync(old, { recursive: true, force: true });
console.log(`darkroom build: compiled src/ to ${path.relative(ROOT, DIST)}/`);
