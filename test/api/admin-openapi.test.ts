import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Validator, type SpecData } from '@seriousme/openapi-schema-validator';
import { describeEachDb } from '../helpers/db.ts';
import { useTestServer } from '../helpers/server.ts';

interface Doc {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        requestBody?: {
          content: Record<string, { schema: { required?: string[]; properties?: Record<string, unknown> } }>;
        };
        parameters?: Array<{ name: string; in: string }>;
        security?: unknown[];
      }
    >
  >;
}

describeEachDb('OpenAPI document and reference page', (kind) => {
  const t = useTestServer(kind);

  it('serves an OpenAPI 3.1 document that an independent validator accepts, covering every route', async () => {
    const base = t.server.baseUrl;
    const res = await fetch(`${base}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as Doc;
    assert.equal(doc.openapi, '3.1.0');
    // @seriousme/openapi-schema-validator checks against the official OpenAPI 3.1 JSON Schema.
    const validator = new Validator();
    const result = await validator.validate(doc as unknown as SpecData);
    assert.deepEqual(result.errors ?? [], [], 'the document is valid OpenAPI 3.1');
    assert.equal(result.valid, true);
    assert.equal(validator.version, '3.1');

    // The submit body is the zod schema the route validates with.
    const submit = doc.paths['/v1/tasks']!.post!.requestBody!.content['application/json']!.schema;
    assert.deepEqual([...(submit.required ?? [])].sort(), ['plan', 'type', 'user_id']);
    for (const field of ['webhook_url', 'deadline_seconds', 'inputs', 'params'])
      assert.ok(submit.properties?.[field], field);
    const list = doc.paths['/v1/tasks']!.get!.parameters!.map((p) => p.name);
    for (const q of ['user_id', 'state', 'limit', 'cursor']) assert.ok(list.includes(q), q);
    assert.deepEqual(doc.paths['/healthz']!.get!.security, []);
    for (const p of [
      '/v1/tasks/{id}',
      '/v1/tasks/{id}/cancel',
      '/v1/admin/stats',
      '/v1/admin/providers',
      '/v1/admin/alerts',
      '/v1/admin/webhooks/deliveries',
      '/metrics',
      '/v1/uploads',
    ])
      assert.ok(doc.paths[p], `documents ${p}`);
    assert.ok(doc.paths['/v1/tasks/{id}']!.get!.parameters!.some((p) => p.name === 'id' && p.in === 'path'));
  });

  it('serves the reference page and its assets itself, nothing from a CDN', async () => {
    const base = t.server.baseUrl;
    const page = await fetch(`${base}/docs`);
    assert.equal(page.status, 200);
    const html = await page.text();
    const srcs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.ok(srcs.length >= 3);
    for (const src of srcs) {
      assert.ok(src.startsWith('/'), `${src} is served by darkroom`);
      const asset = await fetch(`${base}${src}`);
      assert.equal(asset.status, 200, src);
      assert.ok((await asset.arrayBuffer()).byteLength > 0);
    }
    assert.equal((await fetch(`${base}/docs/assets/package.json`)).status, 404);
  });
});
