/**
 * What darkroom fetches on a caller's or a provider's word (issue 9, item 13): a refused submit
 * keeps none of the images it fetched from URL inputs, and a provider's result URL goes through
 * the same SSRF guard as URL inputs.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { createOpenAIProvider } from '../../src/providers/openai.ts';
import type { ProviderCall } from '../../src/providers/types.ts';
import { describeEachDb } from '../helpers/db.ts';
import { postJson, useTestServer } from '../helpers/server.ts';
import { storedRows } from '../helpers/stored-rows.ts';

interface Host {
  url: string;
  server: Server;
  hits: string[];
}

async function serve(
  handler: (path: string, host: Host) => [number, string, Buffer | string],
): Promise<Host> {
  const host = { url: '', hits: [] as string[] } as Host;
  host.server = createServer((req, res) => {
    host.hits.push(req.url ?? '');
    const [status, type, body] = handler(req.url ?? '', host);
    res.writeHead(status, { 'content-type': type }).end(body);
  });
  await new Promise<void>((r) => host.server.listen(0, '127.0.0.1', r));
  host.url = `http://127.0.0.1:${(host.server.address() as AddressInfo).port}`;
  return host;
}

const close = (host: Host) => new Promise<void>((r) => host.server.close(() => r()));

function files(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true }).map(String);
  } catch {
    return [];
  }
}

let png: Buffer;
before(async () => {
  png = await sharp({ create: { width: 24, height: 16, channels: 3, background: '#4a8' } })
    .png()
    .toBuffer();
});

describeEachDb('a refused submit keeps no fetched input', (kind) => {
  let host: Host;
  before(async () => {
    host = await serve(() => [200, 'image/png', png]);
  });
  after(() => close(host));
  const t = useTestServer(kind, {
    credits: { initialGrant: 1 },
    inputs: { allowPrivateUrls: true },
  });

  it('402 insufficient_credits: no upload row, no stored file, no charge', async () => {
    const uploadsDir = path.join(t.server.config.home, 'files', 'uploads');
    const before = await storedRows(t.server.ctx.db);
    const filesBefore = files(uploadsDir);
    const res = await postJson(t.server.baseUrl, '/v1/tasks', {
      user_id: 'broke',
      type: 'photography',
      plan: 'free',
      inputs: [{ url: `${host.url}/photo.png` }],
    });
    assert.equal(res.status, 402, JSON.stringify(res.body));
    assert.equal((res.body.error as { code: string }).code, 'insufficient_credits');
    assert.equal(host.hits.length, 1, 'the input was fetched (and validated) before the charge');
    const after = await storedRows(t.server.ctx.db);
    assert.equal(after.uploads, before.uploads, 'the fetched input was stored');
    assert.equal(after.tasks, before.tasks);
    assert.equal(after.ledger, before.ledger);
    assert.deepEqual(files(uploadsDir), filesBefore, 'the fetched image stayed in storage');
  });

  it('an order already running answers with its task and keeps no second copy of the input', async () => {
    const submit = () =>
      postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: 'once',
        order_id: 'order-1',
        type: 'photography',
        plan: 'free',
        inputs: [{ url: `${host.url}/photo.png` }],
      });
    // initialGrant 1 < the plan's 2 credits: top the user up through the database like an operator would.
    await t.server.ctx.db.query(`INSERT INTO users (id, balance) VALUES ('once', 100)`);
    const first = await submit();
    assert.equal(first.status, 202, JSON.stringify(first.body));
    const uploads = (await storedRows(t.server.ctx.db)).uploads;
    const second = await submit();
    if (second.status === 200) {
      assert.equal(second.body.id, first.body.id);
      assert.equal(
        (await storedRows(t.server.ctx.db)).uploads,
        uploads,
        'the deduplicated submit kept its input',
      );
    } else {
      assert.equal(second.status, 202, 'the first task ended already: a new one is fine');
    }
  });
});

describe('provider result URLs go through the SSRF guard', () => {
  let internal: Host;
  let relay: Host;
  let nextTarget = 'own';
  before(async () => {
    internal = await serve(() => [200, 'image/png', png]);
    relay = await serve((p, self) => {
      if (p.startsWith('/own/')) return [200, 'image/png', png];
      const target = nextTarget === 'own' ? `${self.url}/own/result.png` : nextTarget;
      return [200, 'application/json', JSON.stringify({ created: 1, data: [{ url: target }] })];
    });
  });
  after(async () => {
    await close(internal);
    await close(relay);
  });

  const call = (): ProviderCall => ({
    taskId: 't',
    jobId: 'j',
    step: 'generate',
    prompt: 'a lighthouse',
    inputs: [],
    count: 1,
    seed: 1,
    firstIndex: 0,
    params: {},
    key: { id: 'k', secret: 'sk-relay-secret' },
    signal: new AbortController().signal,
  });

  it('refuses a result URL on another private address or the metadata service, fetches one on the relay itself', async () => {
    const adapter = createOpenAIProvider({
      baseUrl: relay.url,
      model: 'flux-kontext-pro',
      timeoutMs: 10_000,
    });
    nextTarget = `${internal.url}/admin/snapshot.png`;
    const toInternal = await adapter.call(call());
    assert.equal(toInternal.kind, 'permanent', JSON.stringify(toInternal));
    assert.equal((toInternal as { reason?: string }).reason, 'result_url_forbidden');
    assert.deepEqual(internal.hits, [], 'darkroom connected to the internal host');
    nextTarget = 'http://169.254.169.254/latest/meta-data/iam/security-credentials/';
    const toMetadata = await adapter.call(call());
    assert.equal(toMetadata.kind, 'permanent', JSON.stringify(toMetadata));
    assert.equal((toMetadata as { reason?: string }).reason, 'result_url_forbidden');
    nextTarget = 'own';
    const own = await adapter.call(call());
    assert.equal(own.kind, 'success', JSON.stringify(own));
    assert.ok(relay.hits.includes('/own/result.png'));
  });
});
