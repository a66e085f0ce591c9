import { createHmac, randomBytes } from 'node:crypto';
import path from 'node:path';
import { readOrCreateSecretFile } from '../config/secret-file.ts';

/**
 * Standard Webhooks signatures (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
 * `webhook-signature: v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>`,
 * the secret written `whsec_<base64 of the key bytes>`, the timestamp in Unix seconds.
 */

const PREFIX = 'whsec_';

export function generateSecret(): string {
  return PREFIX + randomBytes(32).toString('base64');
}

function keyBytes(secret: string): Buffer {
  const body = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  const key = Buffer.from(body, 'base64');
  if (key.length < 24 || key.length > 64)
    throw new Error('webhooks.signingSecret must be whsec_ followed by 24 to 64 base64-encoded bytes');
  return key;
}

/** Checks a configured secret's shape at start-up (throws with the field's name). */
export function checkSecret(secret: string): void {
  keyBytes(secret);
}

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

export function signWebhook(
  secret: string,
  id: string,
  timestampSeconds: number,
  body: string,
): SignedHeaders {
  const signature = createHmac('sha256', keyBytes(secret))
    .update(`${id}.${timestampSeconds}.${body}`)
    .digest('base64');
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': `v1,${signature}`,
  };
}

/**
 * The signing secret: `webhooks.signingSecret` (`env:NAME` reads the environment), else the one
 * kept in `<home>/webhook-secret`, created on first use. The file appears complete or not at
 * all (written aside, then hard-linked into place, which fails if another process won the race),
 * so processes starting together on a fresh shared home all end up with the same secret.
 */
export function resolveSigningSecret(
  configured: string | undefined,
  home: string,
  env: NodeJS.ProcessEnv = process.env,
): string {
  if (configured !== undefined) {
    const value = configured.startsWith('env:') ? env[configured.slice(4)] : configured;
    if (!value)
      throw new Error(`webhooks.signingSecret: environment variable ${configured.slice(4)} is not set`);
    checkSecret(value);
    return value;
  }
  return readOrCreateSecretFile(path.join(home, 'webhook-secret'), generateSecret);
}
