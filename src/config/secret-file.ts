import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The secret kept in `file`, created with `generate()` on first use. The file appears complete or
 * not at all: written aside (mode 0600), then hard-linked into place, which fails if another process
 * won the race, and then that process's secret is read. So processes starting together on a fresh
 * shared home all end up with the same secret (a plain exclusive create let the loser crash on
 * EEXIST, or read the winner's file before its secret was written).
 */
export function readOrCreateSecretFile(file: string, generate: () => string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  mkdirSync(path.dirname(file), { recursive: true });
  const aside = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(aside, generate() + '\n', { mode: 0o600 });
  try {
    linkSync(aside, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(aside);
  }
  return readFileSync(file, 'utf8').trim();
}

/** The signing secret of local file URLs: DARKROOM_SIGNING_SECRET, else `<home>/signing-secret`. */
export function fileSigningSecret(home: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env.DARKROOM_SIGNING_SECRET) return env.DARKROOM_SIGNING_SECRET;
  return readOrCreateSecretFile(path.join(home, 'signing-secret'), () => randomBytes(32).toString('hex'));
}
