/**
 * darkroom's requests beside the official `openai` client's for the same call, captured on the wire:
 * same method and path, same authorization, same JSON body for generations, and the same multipart
 * fields for edits (`image` for one file, `image[]` for several, as the SDK's form encoder writes
 * arrays: openai-node src/internal/uploads.ts, `addFormValue`).
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { createOpenAIProvider } from '../../src/providers/openai.ts';
import { call, photo, SECRET } from './openai-fixtures.ts';

interface Captured {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface FormSummary {
  fields: Record<string, string[]>;
  files: Record<string, Array<{ type: string; bytes: string }>>;
}

async function summarizeForm(request: Captured): Promise<FormSummary> {
  const form = await new Response(request.body, {
    headers: { 'content-type': String(request.headers['content-type']) },
  }).formData();
  const summary: FormSummary = { fields: {}, files: {} };
  for (const [name, value] of form.entries()) {
    if (typeof value === 'string') (summary.fields[name] ??= []).push(value);
    else
      (summary.files[name] ??= []).push({
        type: value.type,
        bytes: Buffer.from(await value.arrayBuffer()).toString('base64'),
      });
  }
  return summary;
}

describe('contract: darkroom sends what the official openai client sends', () => {
  let server: Server;
  let base: string;
  let seen: Captured[] = [];
  let png: Buffer;
  before(async () => {
    png = await photo('#123');
    const answer = JSON.stringify({ created: 1, data: [{ b64_json: png.toString('base64') }] });
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        seen.push({
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks),
        });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(answer);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(() => {
    seen = [];
  });

  const client = (): OpenAI => new OpenAI({ apiKey: SECRET, baseURL: `${base}/v1`, maxRetries: 0 });
  const adapter = (model: string) => createOpenAIProvider({ baseUrl: base, model, timeoutMs: 30_000 });

  it('generations: the same path, authorization and JSON body', async () => {
    await client().images.generate({
      model: 'gpt-image-2',
      prompt: 'a paper boat',
      n: 4,
      size: '1536x1024',
      quality: 'high',
      output_format: 'webp',
    });
    const outcome = await adapter('gpt-image-2').call(
      call({
        prompt: 'a paper boat',
        count: 4,
        // response_format from a task's params is dropped: the SDK documents it as unsupported here
        params: { size: '1536x1024', quality: 'high', output_format: 'webp', response_format: 'b64_json' },
      }),
    );
    assert.equal(outcome.kind, 'success');
    const [sdk, ours] = seen;
    assert.ok(sdk && ours);
    assert.deepEqual([ours.method, ours.path], [sdk.method, sdk.path]);
    assert.equal(ours.path, '/v1/images/generations');
    assert.equal(ours.headers.authorization, sdk.headers.authorization);
    assert.equal(ours.headers['content-type'], sdk.headers['content-type']);
    assert.deepEqual(JSON.parse(ours.body.toString()), JSON.parse(sdk.body.toString()));
  });

  for (const count of [1, 2]) {
    it(`edits with ${count} input image(s): the same multipart fields and files`, async () => {
      const inputs = count === 1 ? [png] : [png, await photo('#fed')];
      await client().images.edit({
        model: 'gpt-image-1.5',
        prompt: 'dress the person',
        n: 2,
        quality: 'medium',
        image:
          count === 1
            ? await toFile(png, 'person.png', { type: 'image/png' })
            : await Promise.all(inputs.map((data, i) => toFile(data, `in-${i}.png`, { type: 'image/png' }))),
      });
      const outcome = await adapter('gpt-image-1.5').call(
        call({
          prompt: 'dress the person',
          count: 2,
          params: { quality: 'medium' },
          inputs: inputs.map((data, i) => ({
            data,
            mime: 'image/png',
            role: i === 0 ? 'person' : 'garment',
          })),
        }),
      );
      assert.equal(outcome.kind, 'success');
      const [sdk, ours] = seen;
      assert.ok(sdk && ours);
      assert.deepEqual([ours.method, ours.path], [sdk.method, sdk.path]);
      assert.equal(ours.path, '/v1/images/edits');
      assert.equal(ours.headers.authorization, sdk.headers.authorization);
      assert.match(String(ours.headers['content-type']), /^multipart\/form-data; boundary=/);
      assert.match(String(sdk.headers['content-type']), /^multipart\/form-data; boundary=/);
      const [sdkForm, ourForm] = [await summarizeForm(sdk), await summarizeForm(ours)];
      assert.deepEqual(ourForm, sdkForm);
      assert.deepEqual(Object.keys(ourForm.files), [count === 1 ? 'image' : 'image[]']);
    });
  }
});
