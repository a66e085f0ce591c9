// Whether dist/ (the compiled JavaScript, `npm run build`) was built from the sources as they
// are now: the build writes a hash of src/**/*.ts and the tsconfig files to dist/.source-hash,
// and the launcher (bin/darkroom.js) runs dist/ only when that hash still matches.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(ROOT, 'dist');
export const HASH_FILE = '.source-hash';

function tsFiles(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(p));
    else if (entry.name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** A hash of every input of the build: each source file's path and content, and the tsconfigs. */
export function sourceHash() {
  const hash = createHash('sha256');
  const files = [
    ...tsFiles(path.join(ROOT, 'src')),
    path.join(ROOT, 'tsconfig.json'),
    path.join(ROOT, 'tsconfig.build.json'),
  ].sort();
  for (const file of files) {
    hash.update(path.relative(ROOT, file));
    hash.update('\0');
    hash.update(readFileSync(file));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** True when dist/ exists and was built from the current sources. */
export function distIsCurrent() {
  let built;
  try {
    built = readFileSync(path.join(DIST, HASH_FILE), 'utf8').trim();
  } catch {
    return false;
  }
  return built === sourceHash();
}
