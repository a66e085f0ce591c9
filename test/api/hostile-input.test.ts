/**
 * Hostile input (issue 9, items 12 and 13): requests that used to answer 500, leave Fastify's
 * own error format, or join two Idempotency-Keys into one. Every answer must be a 4xx in the
 * `{ error: { code, message } }` envelope (docs/errors.md), and nothing may be stored or charged.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { InjectOptions } from 'fastify';
import sharp from 'sharp';
import { ErrorCodes } from '../../src/errors.ts';
import { describeEachDb } from '../helpers/db.ts';
import { rawRequest } from '../helpers/raw-http.ts';
import { useTestServer } from '../helpers/server.ts';
import { storedRows } from '../helpers/stored-rows.ts';

const SUBMIT = { user_id: 'mallory', type: 'photography', plan: 'free' };

function assertEnvelope(status: number, body: string, code: string, what: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    assert.fail(`${what}: the body is not JSON: ${body.slice(0, 200)}`);
  }
  const error = (parsed as { error?: { code?: unknown; message?: unknown } }).error;
  assert.ok(
    error && typeof error.code === 'string' && typeof error.message === 'string' && error.message.length > 0,
    `${what}: not the error envelope: ${body.slice(0, 200)}`,
  );
  assert.equal(error.code, code, `${what}: ${body.slice(0, 300)}`);
  assert.equal(status, ErrorCodes[code as keyof typeof ErrorCodes], `${what}: status of ${code}`);
}

function multipart(parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, Buffer.from('--zzz--\r\n')]);
}

function field(name: string): Buffer {
  return Buffer.from(`--zzz\r\nContent-Disposition: form-data; name="${name}"\r\n\r\nv\r\n`);
}

describeEachDb('hostile input', (kind) => {
  const t = useTestServer(kind);

  it('answers NUL bytes, lone surrogates, inherited names, deep nesting and broken multipart with a 4xx', async () => {
    const app = t.server.app!;
    const before = await storedRows(t.server.ctx.db);
    const json = { 'content-type': 'application/json' };
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#345' } })
      .png()
      .toBuffer();
    const filePart = Buffer.concat([
      Buffer.from(
        '--zzz\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n',
      ),
      png,
      Buffer.from('\r\n'),
    ]);
    const mp = { 'content-type': 'multipart/form-data; boundary=zzz' };
    const cases: Array<[string, InjectOptions, string]> = [
      [
        'NUL in user_id',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, user_id: 'a\u0000b' } },
        'validation_failed',
      ],
      [
        'NUL in prompt',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, prompt: 'x\u0000' } },
        'validation_failed',
      ],
      [
        'NUL in order_id',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, order_id: '\u0000' } },
        'validation_failed',
      ],
      ['NUL in a path parameter', { method: 'GET', url: '/v1/tasks/a%00b' }, 'validation_failed'],
      ['NUL in a cancel path', { method: 'POST', url: '/v1/tasks/a%00b/cancel' }, 'validation_failed'],
      ['NUL in a user path', { method: 'GET', url: '/v1/users/a%00b/credits' }, 'validation_failed'],
      ['NUL in the query', { method: 'GET', url: '/v1/tasks?user_id=a%00b' }, 'validation_failed'],
      ['NUL in the cursor', { method: 'GET', url: '/v1/tasks?cursor=%00' }, 'validation_failed'],
      [
        'a lone high surrogate',
        {
          method: 'POST',
          url: '/v1/tasks',
          headers: json,
          payload: '{"user_id":"a\\ud800","type":"photography","plan":"free"}',
        },
        'validation_failed',
      ],
      [
        'a lone low surrogate in a key',
        {
          method: 'POST',
          url: '/v1/tasks',
          headers: json,
          payload: '{"user_id":"a","type":"photography","plan":"free","params":{"\\udc00":1}}',
        },
        'validation_failed',
      ],
      [
        'type "toString"',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, type: 'toString' } },
        'unknown_type',
      ],
      [
        'type "constructor"',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, type: 'constructor' } },
        'unknown_type',
      ],
      [
        'plan "__proto__"',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, plan: '__proto__' } },
        'unknown_plan',
      ],
      [
        'plan "hasOwnProperty"',
        { method: 'POST', url: '/v1/tasks', payload: { ...SUBMIT, plan: 'hasOwnProperty' } },
        'unknown_plan',
      ],
      [
        'params nested 5,000 arrays deep',
        {
          method: 'POST',
          url: '/v1/tasks',
          headers: json,
          payload: `{"user_id":"a","type":"photography","plan":"free","params":{"x":${'['.repeat(5000)}${']'.repeat(5000)}}}`,
        },
        'validation_failed',
      ],
      [
        'params nested 5,000 objects deep',
        {
          method: 'POST',
          url: '/v1/tasks',
          headers: json,
          payload: `{"user_id":"a","type":"photography","plan":"free","params":{"x":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}}`,
        },
        'validation_failed',
      ],
      [
        'multipart without a boundary',
        {
          method: 'POST',
          url: '/v1/uploads',
          headers: { 'content-type': 'multipart/form-data' },
          payload: 'abc',
        },
        'malformed_multipart',
      ],
      [
        'multipart with the wrong boundary',
        {
          method: 'POST',
          url: '/v1/uploads',
          headers: mp,
          payload: Buffer.concat([
            Buffer.from('--yyy\r\n'),
            filePart.subarray(7),
            Buffer.from('--yyy--\r\n'),
          ]),
        },
        'malformed_multipart',
      ],
      [
        'an unterminated multipart body',
        {
          method: 'POST',
          url: '/v1/uploads',
          headers: mp,
          payload: filePart.subarray(0, filePart.length - 40),
        },
        'malformed_multipart',
      ],
      [
        'more multipart fields than allowed',
        {
          method: 'POST',
          url: '/v1/uploads',
          headers: mp,
          payload: multipart([...Array.from({ length: 13 }, (_, i) => field(`f${i}`)), filePart]),
        },
        'payload_too_large',
      ],
      ['bad percent-encoding in the path', { method: 'GET', url: '/v1/tasks/%E0%A4%A' }, 'invalid_url'],
      [
        'a path parameter over maxParamLength',
        { method: 'GET', url: `/v1/tasks/${'x'.repeat(300)}` },
        'uri_too_long',
      ],
      [
        'malformed JSON',
        { method: 'POST', url: '/v1/tasks', headers: json, payload: '{"user_id":' },
        'invalid_json',
      ],
      [
        'a body over bodyLimitBytes',
        {
          method: 'POST',
          url: '/v1/tasks',
          headers: json,
          payload: JSON.stringify({ ...SUBMIT, prompt: 'x'.repeat(1_100_000) }),
        },
        'payload_too_large',
      ],
      [
        'two Idempotency-Key headers',
        { method: 'POST', url: '/v1/tasks', headers: { 'idempotency-key': ['k-1', 'k-2'] }, payload: SUBMIT },
        'validation_failed',
      ],
    ];
    for (const [what, request, code] of cases) {
      const res = await app.inject(request);
      assertEnvelope(res.statusCode, res.body, code, what);
    }
    assert.deepEqual(
      await storedRows(t.server.ctx.db),
      before,
      'a refused request stored or charged something',
    );
  });

  it("answers what Node's HTTP parser refuses in the same envelope, over a real socket", async () => {
    const base = t.server.baseUrl;
    const before = await storedRows(t.server.ctx.db);
    const body = JSON.stringify(SUBMIT);
    const cases: Array<[string, string, string]> = [
      ['NUL in the request line', 'GET /v1/tasks/a\u0000b HTTP/1.1\r\nHost: x\r\n\r\n', 'bad_request'],
      [
        'Content-Length together with Transfer-Encoding',
        `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body}`,
        'bad_request',
      ],
      [
        'headers over the size limit',
        `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
        'headers_too_large',
      ],
      [
        'a URL over the size limit',
        `GET /v1/tasks/${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
        'headers_too_large',
      ],
      [
        'bad percent-encoding',
        'GET /v1/tasks/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
        'invalid_url',
      ],
      ['a NUL in a header value', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n', 'bad_request'],
      [
        'two Idempotency-Key headers (Node would join them into "k-1, k-2")',
        `POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: k-1\r\nIdempotency-Key: k-2\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        'validation_failed',
      ],
    ];
    for (const [what, request, code] of cases) {
      const res = await rawRequest(base, request);
      assertEnvelope(res.status, res.body, code, what);
    }
    assert.deepEqual(
      await storedRows(t.server.ctx.db),
      before,
      'a refused request stored or charged something',
    );
  });
});
