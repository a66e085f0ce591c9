import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fileSigningSecret } from '../../src/config/secret-file.ts';
import { tempDir } from '../helpers/config.ts';

const MODULE = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'src',
  'config',
  'secret-file.ts',
);
const PROCESSES = 8;
const ROUNDS = 5;

/** A process that waits for `go` on stdin, then resolves the secret of `home` (so all start together). */
function resolver(home: string): { ready: Promise<void>; go: () => void; result: Promise<string> } {
  const code = `import { fileSigningSecret } from ${JSON.stringify(MODULE)};
process.stdin.once('data', () => {
  try { process.stdout.write(JSON.stringify({ secret: fileSigningSecret(${JSON.stringify(home)}, {}) })); }
  catch (e) { process.stdout.write(JSON.stringify({ error: String(e) })); }
});
process.stdout.write('ready\\n');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  let onReady: () => void = () => {};
  const ready = new Promise<void>((r) => (onReady = r));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.startsWith('ready\n')) onReady();
  });
  const result = new Promise<string>((resolve, reject) =>
    child.on('exit', (c) => {
      const body = JSON.parse(out.slice('ready\n'.length) || '{}') as { secret?: string; error?: string };
      if (c === 0 && body.secret !== undefined) resolve(body.secret);
      else reject(new Error(`child exited ${c}: ${body.error ?? out}`));
    }),
  );
  return {
    ready,
    go: () => child.stdin.end('go\n'),
    result: ready.then(() => result),
  };
}

describe('the signing secret of local file URLs', () => {
  it('is created once on a fresh shared home: processes starting together all get the same, complete secret', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const home = path.join(tempDir(), 'fresh-home');
      const children = Array.from({ length: PROCESSES }, () => resolver(home));
      await Promise.all(children.map((c) => c.ready));
      for (const c of children) c.go();
      const secrets = await Promise.allSettled(children.map((c) => c.result));
      const failed = secrets.filter((s) => s.status === 'rejected');
      assert.deepEqual(failed, [], `round ${round}: no process fails to start`);
      const values = secrets.map((s) => (s as PromiseFulfilledResult<string>).value);
      assert.equal(new Set(values).size, 1, `round ${round}: one secret: ${values.join(', ')}`);
      assert.match(values[0]!, /^[0-9a-f]{64}$/);
      assert.equal(statSync(path.join(home, 'signing-secret')).mode & 0o777, 0o600);
      assert.equal(fileSigningSecret(home, {}), values[0]);
    }
  });

  it('prefers DARKROOM_SIGNING_SECRET', () => {
    assert.equal(fileSigningSecret(tempDir(), { DARKROOM_SIGNING_SECRET: 'from-env' }), 'from-env');
  });
});
