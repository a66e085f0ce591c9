import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { resolveSigningSecret, signWebhook } from '../../src/webhooks/signing.ts';
import { tempDir } from '../helpers/config.ts';

const SIGNING = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'src',
  'webhooks',
  'signing.ts',
);

function resolveInChild(home: string): Promise<string> {
  const code = `import { resolveSigningSecret } from ${JSON.stringify(SIGNING)};
process.stdout.write(resolveSigningSecret(undefined, ${JSON.stringify(home)}));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (c) => (c === 0 ? resolve(out) : reject(new Error(`child exited ${c}`))));
  });
}

describe('the webhook signing secret', () => {
  it('is generated once on a fresh home, the same for processes racing to create it', async () => {
    const home = path.join(tempDir(), 'fresh-home');
    const secrets = await Promise.all(Array.from({ length: 6 }, () => resolveInChild(home)));
    assert.equal(new Set(secrets).size, 1, secrets.join('\n'));
    assert.match(secrets[0]!, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.equal(statSync(path.join(home, 'webhook-secret')).mode & 0o777, 0o600);
    assert.equal(resolveSigningSecret(undefined, home), secrets[0]);
  });

  it('reads env:NAME and checks the secret’s shape', () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    assert.equal(resolveSigningSecret('env:WH_SECRET', tempDir(), { WH_SECRET: secret }), secret);
    assert.throws(() => resolveSigningSecret('env:WH_MISSING', tempDir(), {}), /WH_MISSING/);
    assert.throws(() => resolveSigningSecret('whsec_c2hvcnQ=', tempDir(), {}), /signingSecret/);
  });

  it('matches the Standard Webhooks reference vector', () => {
    // The published test vector of Svix and the Standard Webhooks libraries (their own test suites).
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const body = '{"test": 2432232314}';
    const headers = signWebhook(secret, 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, body);
    assert.equal(headers['webhook-signature'], 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
    assert.throws(
      () => new Webhook(secret).verify(body, headers),
      /timestamp/i,
      'an old timestamp is refused',
    );
  });
});
