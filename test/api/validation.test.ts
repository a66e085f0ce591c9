import assert from 'node:assert/strict';
import { it } from 'node:test';
import sharp from 'sharp';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';

async function upload(baseUrl: string, data: Buffer, type = 'image/png', name = 'in.png') {
  const form = new FormData();
  form.append('file', new Blob([data], { type }), name);
  const res = await fetch(`${baseUrl}/v1/uploads`, { method: 'POST', body: form });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function errorCode(body: Record<string, unknown>): string {
  const error = body.error as { code?: string; message?: string } | undefined;
  assert.ok(
    error && typeof error.code === 'string' && typeof error.message === 'string',
    `not an error body: ${JSON.stringify(body)}`,
  );
  return error.code!;
}

describeEachDb('API input validation', (kind) => {
  const t = useTestServer(kind, {
    uploads: { maxBytes: 64 * 1024 },
    providers: { main: { sim: { latencyMs: 5000 } } },
  });

  async function storedRows(): Promise<Record<string, number>> {
    const { rows } = await t.server.ctx.db.query<{
      tasks: number;
      uploads: number;
      users: number;
      ledger: number;
    }>(
      `SELECT (SELECT count(*)::int FROM tasks) AS tasks, (SELECT count(*)::int FROM uploads) AS uploads,
              (SELECT count(*)::int FROM users) AS users, (SELECT count(*)::int FROM credit_ledger) AS ledger`,
    );
    return rows[0]!;
  }

  it('answers bad requests with a 4xx and a clear code, storing and charging nothing', async () => {
    const base = t.server.baseUrl;
    const before = await storedRows();
    const cases: Array<[string, Promise<{ status: number; body: Record<string, unknown> }>, number, string]> =
      [
        ['malformed JSON', postJson(base, '/v1/tasks', '{"user_id": "a",'), 400, 'invalid_json'],
        [
          'missing user_id',
          postJson(base, '/v1/tasks', { type: 'photography', plan: 'free' }),
          400,
          'validation_failed',
        ],
        [
          'unknown plan',
          postJson(base, '/v1/tasks', { user_id: 'a', type: 'photography', plan: 'gold' }),
          422,
          'unknown_plan',
        ],
        [
          'unknown type',
          postJson(base, '/v1/tasks', { user_id: 'a', type: 'video', plan: 'free' }),
          422,
          'unknown_type',
        ],
        [
          'unknown field',
          postJson(base, '/v1/tasks', { user_id: 'a', type: 'photography', plan: 'free', colour: 1 }),
          400,
          'validation_failed',
        ],
        [
          'unknown upload',
          postJson(base, '/v1/tasks', {
            user_id: 'a',
            type: 'photography',
            plan: 'free',
            inputs: [{ upload_id: 'nope' }],
          }),
          422,
          'invalid_input',
        ],
        [
          'missing inputs of a type that needs them',
          postJson(base, '/v1/tasks', { user_id: 'a', type: 'fitting', plan: 'free' }),
          422,
          'invalid_input',
        ],
        [
          'non-image upload',
          upload(base, Buffer.from('this is not an image at all'), 'image/png'),
          415,
          'unsupported_image',
        ],
        ['oversized upload', upload(base, Buffer.alloc(200 * 1024, 1)), 413, 'payload_too_large'],
        [
          'unknown task id',
          getJson(base, '/v1/tasks/00000000-0000-7000-8000-000000000000'),
          404,
          'task_not_found',
        ],
        ['cancel of an unknown task', postJson(base, '/v1/tasks/nope/cancel', {}), 404, 'task_not_found'],
        ['unknown route', getJson(base, '/v1/nothing-here'), 404, 'not_found'],
        ['bad list limit', getJson(base, '/v1/tasks?limit=0'), 400, 'validation_failed'],
      ];
    for (const [what, promise, status, code] of cases) {
      const res = await promise;
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
      assert.equal(errorCode(res.body), code, what);
    }
    assert.deepEqual(await storedRows(), before);
  });

  it('accepts a real image upload, normalised, and uses it as a task input', async () => {
    const base = t.server.baseUrl;
    const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#3a7' } })
      .png()
      .toBuffer();
    const person = await upload(base, png);
    assert.equal(person.status, 201, JSON.stringify(person.body));
    assert.equal(person.body.width, 40);
    assert.equal(person.body.height, 30);
    const garment = await upload(base, await sharp(png).jpeg().toBuffer(), 'image/jpeg', 'g.jpg');
    const res = await postJson(base, '/v1/tasks', {
      user_id: 'shopper',
      type: 'fitting',
      plan: 'free',
      inputs: [
        { upload_id: garment.body.upload_id, role: 'garment' },
        { upload_id: person.body.upload_id, role: 'person' },
      ],
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const task = await t.server.ctx.db.query<{ inputs: Array<{ role: string; upload_id: string }> }>(
      'SELECT inputs FROM tasks WHERE id = $1',
      [res.body.id],
    );
    assert.deepEqual(
      task.rows[0]!.inputs.map((i) => [i.role, i.upload_id]),
      [
        ['person', person.body.upload_id],
        ['garment', garment.body.upload_id],
      ],
    );
  });

  it('reports the balance of a new user as the initial grant', async () => {
    const res = await getJson(t.server.baseUrl, '/v1/users/stranger/credits');
    assert.equal(res.status, 200);
    assert.equal(res.body.balance, 1000);
  });
});
