/**
 * Property-based HTTP fuzzing of every route (issue 9): whatever arrives — hostile strings,
 * inherited property names, deep nesting, wrong content types, broken multipart, raw bytes in the
 * request line and headers, CL+TE, bodies cut short — the answer is never a 5xx and never a
 * hang, every 4xx is the `{ error: { code, message } }` envelope with a documented code and its
 * status, and a 4xx stores and charges nothing (row counts and credit balances unchanged).
 *
 * Fixed seed by default; FUZZ_SEED=<n> and FUZZ_RUNS=<n> (runs of the inject property; the raw
 * socket property runs a tenth of it) explore further. A failure prints the seed and the path
 * to replay it (fast-check's `seed` and `path`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { createApiKey } from '../../src/api/auth/manage.ts';
import { ErrorCodes } from '../../src/errors.ts';
import { DB_KINDS } from '../helpers/db.ts';
import { rawRequest } from '../helpers/raw-http.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { storedRows } from '../helpers/stored-rows.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261124);
const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const HANG_MS = 30_000; // a guard against hangs, not a timing check

/** Every "METHOD /path" the app serves, read from Fastify's route tree (HEAD twins left out). */
function routesOf(app: FastifyInstance): Array<{ method: string; path: string }> {
  const prefixes: string[] = [];
  const routes: Array<{ method: string; path: string }> = [];
  for (const line of app.printRoutes().split('\n')) {
    const at = line.search(/[├└]── /);
    if (at < 0) continue;
    const depth = at / 4;
    const m = /^(.*?)(?: \(([^)]*)\))?$/.exec(line.slice(at + 4))!;
    const full = (depth > 0 ? prefixes[depth - 1]! : '') + m[1]!;
    prefixes[depth] = full;
    for (const method of (m[2] ?? '').split(',').map((s) => s.trim())) {
      if (method && method !== 'HEAD' && method !== '-') routes.push({ method, path: full });
    }
  }
  return routes;
}

// ---- generators -------------------------------------------------------------------------------

const hostileText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '',
    'toString',
    '__proto__',
    'constructor',
    'hasOwnProperty',
    'photography',
    'fitting',
    'free',
    'pro',
    'a\u0000b',
    '\ud800',
    '\udc00x',
    '%00',
    '../../etc/passwd',
    '😀',
    'x'.repeat(300),
    '01a20483-7879-746b-8846-244d327b194f',
  ),
);

/** JSON text nested up to 6,000 levels (kept as text: the test's own JSON.stringify would overflow on it). */
const deepText = fc
  .tuple(fc.integer({ min: 1, max: 6000 }), fc.boolean())
  .map(([n, arrays]) =>
    arrays ? `${'['.repeat(n)}${']'.repeat(n)}` : `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`,
  );

const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 1, arbitrary: hostileText },
  { weight: 1, arbitrary: fc.dictionary(hostileText, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }) },
);

/** Bodies shaped like a submit, each field sometimes hostile. */
const submitLike = fc.record(
  {
    user_id: fc.oneof(fc.constantFrom('fuzz-user', 'u2'), hostileText, jsonish),
    order_id: fc.oneof(hostileText, jsonish),
    type: fc.oneof(fc.constantFrom('photography', 'fitting'), hostileText),
    plan: fc.oneof(fc.constantFrom('free', 'pro', 'start'), hostileText),
    prompt: fc.oneof(hostileText, jsonish),
    inputs: fc.oneof(
      fc.array(
        fc.oneof(
          fc.record({ upload_id: hostileText }),
          fc.record({
            url: fc.oneof(
              hostileText,
              fc.constantFrom('http://127.0.0.1:1/x.png', 'file:///etc/passwd', 'http://169.254.169.254/'),
            ),
          }),
          jsonish,
        ),
        { maxLength: 3 },
      ),
      jsonish,
    ),
    params: fc.oneof(
      fc.record(
        {
          width: fc.oneof(fc.integer(), jsonish),
          height: fc.integer(),
          seed: fc.oneof(fc.integer(), fc.double()),
        },
        { requiredKeys: [] },
      ),
      fc.dictionary(hostileText, jsonish, { maxKeys: 3 }),
      jsonish,
    ),
    deadline_seconds: fc.oneof(fc.integer(), fc.double(), jsonish),
  },
  { requiredKeys: [] },
);

/** Every byte of the UTF-8 form (a lone surrogate becomes U+FFFD's), so any text makes a valid path segment. */
function percentEncode(text: string): string {
  return [...Buffer.from(text)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
}

const segment = fc.oneof(
  hostileText.map(percentEncode),
  fc.constantFrom(
    '%zz',
    '%E0%A4%A',
    '%00',
    '%2F..%2F',
    'x'.repeat(300),
    '01a20483-7879-746b-8846-244d327b194f',
  ),
);

const query = fc.oneof(
  fc.constant(''),
  fc
    .array(
      fc.tuple(
        fc.oneof(fc.constantFrom('user_id', 'state', 'limit', 'cursor', 'exp', 'sig'), segment),
        segment,
      ),
      {
        maxLength: 4,
      },
    )
    .map((pairs) => `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}`),
  fc.constantFrom(
    '?limit=0',
    '?limit=-1',
    '?limit=1e309',
    '?state=toString',
    '?user_id=%00',
    '?%zz=1',
    '?a[b][c]=1',
  ),
);

const contentType = fc.constantFrom(
  undefined,
  'application/json',
  'application/json; charset=utf-16',
  'text/plain',
  'application/xml',
  'multipart/form-data',
  'multipart/form-data; boundary=zzz',
  'multipart/form-data; boundary=',
  'application/x-www-form-urlencoded',
);

const multipartBody = fc
  .tuple(
    fc.array(fc.tuple(hostileText, hostileText), { maxLength: 14 }),
    fc.option(fc.uint8Array({ maxLength: 64 })),
    fc.boolean(),
  )
  .map(([fields, file, terminated]) => {
    const parts = fields.map(
      ([n, v]) => `--zzz\r\nContent-Disposition: form-data; name="${n}"\r\n\r\n${v}\r\n`,
    );
    const filePart = file
      ? Buffer.concat([
          Buffer.from(
            '--zzz\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n',
          ),
          Buffer.from(file),
          Buffer.from('\r\n'),
        ])
      : Buffer.alloc(0);
    return Buffer.concat([
      Buffer.from(parts.join('')),
      filePart,
      Buffer.from(terminated ? '--zzz--\r\n' : ''),
    ]);
  });

const body = fc.oneof(
  { weight: 4, arbitrary: submitLike.map((b) => JSON.stringify(b) as string | Buffer) },
  { weight: 2, arbitrary: jsonish.map((v) => JSON.stringify(v) ?? 'null') },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  { weight: 2, arbitrary: multipartBody },
  { weight: 1, arbitrary: fc.constant(JSON.stringify({ prompt: 'x'.repeat(1_100_000) })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(deepText, fc.constantFrom('params', 'inputs', 'prompt', 'user_id'))
      .map(([d, field]) => `{"user_id":"u","type":"photography","plan":"free","${field}":{"x":${d}}}`),
  },
);

// ---- checks -----------------------------------------------------------------------------------

function checkAnswer(status: number, text: string, what: string): void {
  assert.ok(status < 500, `${what}: ${status} ${text.slice(0, 300)}`);
  if (status < 400) return;
  let parsed: { error?: { code?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    assert.fail(`${what}: a ${status} that is not JSON: ${text.slice(0, 300)}`);
  }
  const error = parsed.error;
  assert.ok(
    error && typeof error.code === 'string' && typeof error.message === 'string',
    `${what}: not the error envelope: ${text.slice(0, 300)}`,
  );
  assert.ok(Object.hasOwn(ErrorCodes, error.code), `${what}: undocumented code ${error.code}`);
  assert.equal(status, ErrorCodes[error.code as keyof typeof ErrorCodes], `${what}: status of ${error.code}`);
}

/**
 * The status and body of an injected request; an event stream that opened (an admin's
 * GET /v1/admin/stream) is a 200 whose body never ends: it is closed once its headers are read.
 */
async function answerOf(
  response: Promise<{
    statusCode: number;
    headers: Record<string, unknown>;
    stream(): NodeJS.ReadableStream;
  }>,
): Promise<{ statusCode: number; body: string }> {
  const res = await response;
  const stream = res.stream() as NodeJS.ReadableStream & { destroy(): void };
  if (String(res.headers['content-type'] ?? '').startsWith('text/event-stream')) {
    stream.destroy();
    return { statusCode: res.statusCode, body: '' };
  }
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return { statusCode: res.statusCode, body: Buffer.concat(chunks).toString('utf8') };
}

function guarded<T>(what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    work,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${HANG_MS} ms`)), HANG_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

// HTTP behaviour: one database kind is enough (PostgreSQL when this run has one).
const kind = DB_KINDS.at(-1)!;

describe(`HTTP fuzzing [${kind}] (seed ${SEED})`, () => {
  let server: TestServer;
  let key: string;
  let routes: Array<{ method: string; path: string }>;
  before(async () => {
    // API only: no scheduler or worker changes rows behind the property's back.
    server = await startTestServer(
      kind,
      {
        auth: { enabled: true },
        credits: { initialGrant: 3 },
        server: { requestTimeoutMs: 1000, headersTimeoutMs: 500 },
      },
      ['api'],
    );
    key = (await createApiKey(server.ctx.db, 'admin', 'fuzz')).key;
    routes = routesOf(server.app!);
    assert.ok(routes.length >= 10, `route tree parsed wrongly: ${JSON.stringify(routes)}`);
  });
  after(async () => {
    await server?.stop();
  });

  it('every route: no 5xx, no hang, the envelope on every 4xx, and a 4xx stores and charges nothing', async () => {
    const app = server.app!;
    const route = fc.oneof(
      { weight: 5, arbitrary: fc.constantFrom(...routes) },
      {
        weight: 1,
        arbitrary: fc.record({
          method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'),
          path: fc.constant('/v1/:x/:y'),
        }),
      },
    );
    const request = fc.record({
      route,
      params: fc.array(segment, { minLength: 3, maxLength: 3 }),
      query,
      contentType,
      body: fc.option(body, { nil: undefined }),
      idempotency: fc.option(
        fc.oneof(
          hostileText,
          fc.array(fc.string({ minLength: 1, maxLength: 5 }), { minLength: 2, maxLength: 2 }),
        ),
        { nil: undefined },
      ),
      auth: fc.constantFrom('key', 'key', 'key', 'none', 'bad'),
    });
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        let i = 0;
        const url = r.route.path.replace(/:[a-z_]+|\*/g, () => r.params[i++ % 3]!) + r.query;
        const headers: Record<string, string | string[]> = {};
        if (r.auth === 'key') headers.authorization = `Bearer ${key}`;
        if (r.auth === 'bad') headers.authorization = 'Bearer drk_notakey';
        if (r.contentType) headers['content-type'] = r.contentType;
        if (r.idempotency !== undefined) headers['idempotency-key'] = r.idempotency;
        const options: InjectOptions = {
          method: r.route.method as 'GET',
          url,
          headers,
          ...(r.body !== undefined && r.route.method !== 'GET' ? { payload: r.body } : {}),
        };
        const what = `${r.route.method} ${url.slice(0, 120)}`;
        const before = await storedRows(server.ctx.db);
        let res: { statusCode: number; body: string };
        try {
          res = await guarded(what, answerOf(app.inject({ ...options, payloadAsStream: true })));
        } catch (error) {
          // light-my-request refuses some header values Node itself would never let through.
          if (
            /Invalid character in header|ERR_INVALID_CHAR|ERR_HTTP_INVALID_HEADER_VALUE/.test(String(error))
          )
            return;
          throw error;
        }
        checkAnswer(res.statusCode, res.body, what);
        if (res.statusCode >= 400) {
          assert.deepEqual(
            await storedRows(server.ctx.db),
            before,
            `${what}: a ${res.statusCode} stored or charged`,
          );
        }
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
  });

  it('raw HTTP over a real socket: bad bytes, CL+TE, bad encoding and bodies cut short get a 4xx envelope', async () => {
    const token = fc.oneof(
      segment,
      fc.constantFrom('a\u0000b', '%zz', '%', 'a b', '\t', 'é', '\u00ff', '\r', '?\u0000=1'),
    );
    const rawReq = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'GETT', 'get'),
      path: fc.array(token, { minLength: 1, maxLength: 3 }).map((parts) => `/v1/tasks/${parts.join('/')}`),
      headerValue: fc.oneof(hostileText, fc.constantFrom('a\u0000b', 'x'.repeat(20_000))),
      clte: fc.boolean(),
      declaredExtra: fc.constantFrom(0, 0, 5),
      body: fc.oneof(
        fc.constant('{"user_id":"u","type":"photography","plan":"free"}'),
        fc.string({ maxLength: 40 }),
      ),
    });
    await fc.assert(
      fc.asyncProperty(rawReq, async (r) => {
        const bytes = Buffer.from(r.body);
        const lines = [
          `${r.method} ${r.path} HTTP/1.1`,
          'Host: fuzz',
          `Authorization: Bearer ${key}`,
          'Content-Type: application/json',
          `X-Fuzz: ${r.headerValue}`,
          `Content-Length: ${bytes.length + r.declaredExtra}`,
          ...(r.clte ? ['Transfer-Encoding: chunked'] : []),
          'Connection: close',
        ];
        const text = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), bytes]);
        const res = await rawRequest(server.baseUrl, text, HANG_MS);
        checkAnswer(res.status, res.body, `raw ${r.method} ${JSON.stringify(r.path).slice(0, 80)}`);
      }),
      { seed: SEED, numRuns: Math.max(10, Math.round(RUNS / 10)), endOnFailure: true },
    );
  });
});
