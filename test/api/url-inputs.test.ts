import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { postJson, useTestServer } from '../helpers/server.ts';

/** An image host on loopback: a private address, so only reachable when the config allows it. */
async function imageHost(): Promise<{ url: string; server: Server; hits: () => number }> {
  const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#48c' } })
    .png()
    .toBuffer();
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.url === '/redirect') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      return;
    }
    res
      .writeHead(200, { 'content-type': 'image/png' })
      .end(req.url === '/text' ? Buffer.from('not an image') : png);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, hits: () => hits };
}

async function counts(db: { query: (s: string) => Promise<{ rows: Array<Record<string, number>> }> }) {
  const { rows } = await db.query(
    `SELECT (SELECT count(*)::int FROM tasks) AS tasks, (SELECT count(*)::int FROM uploads) AS uploads`,
  );
  return rows[0]!;
}

describe('URL inputs on the submit path', () => {
  let host: Awaited<ReturnType<typeof imageHost>>;
  before(async () => {
    host = await imageHost();
  });
  after(() => new Promise<void>((r) => host.server.close(() => r())));

  describe('with the default SSRF protection', () => {
    const t = useTestServer('pglite');
    it('refuses loopback, odd notations and metadata addresses before any request, storing nothing', async () => {
      const before = await counts(t.server.ctx.db);
      const port = new URL(host.url).port;
      for (const url of [
        `${host.url}/a.png`,
        `http://127.1:${port}/a.png`,
        `http://0x7f.1:${port}/a.png`,
        'http://169.254.169.254/latest/meta-data/',
        `http://[::ffff:127.0.0.1]:${port}/a.png`,
        'file:///etc/passwd',
      ]) {
        const r = await postJson(t.server.baseUrl, '/v1/tasks', {
          user_id: 'ssrf',
          type: 'photography',
          plan: 'free',
          inputs: [{ url }],
        });
        assert.equal(r.status, 422, `${url}: ${JSON.stringify(r.body)}`);
        assert.match((r.body.error as { code: string }).code, /^input_url_forbidden|invalid_input$/, url);
      }
      assert.equal(host.hits(), 0, 'no request reached the private host');
      assert.deepEqual(await counts(t.server.ctx.db), before);
    });
  });

  describe('with private hosts allowed', () => {
    const t = useTestServer('pglite', { inputs: { allowPrivateUrls: true } });
    it('fetches, validates and stores the image, and still refuses a redirect to the metadata address', async () => {
      const ok = await postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: 'urls',
        type: 'photography',
        plan: 'free',
        inputs: [{ url: `${host.url}/a.png` }],
      });
      assert.equal(ok.status, 202, JSON.stringify(ok.body));
      const { rows } = await t.server.ctx.db.query<{ width: number; height: number }>(
        'SELECT width, height FROM uploads',
      );
      assert.deepEqual(rows, [{ width: 64, height: 48 }]);
      const bad = await postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: 'urls',
        type: 'photography',
        plan: 'free',
        inputs: [{ url: `${host.url}/text` }],
      });
      assert.equal(bad.status, 415);
      assert.equal((bad.body.error as { code: string }).code, 'unsupported_image');
      const redirect = await postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: 'urls',
        type: 'photography',
        plan: 'free',
        inputs: [{ url: `${host.url}/redirect` }],
      });
      assert.equal(redirect.status, 422);
      assert.equal((redirect.body.error as { code: string }).code, 'input_url_forbidden');
      const tasks = await t.server.ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM tasks');
      assert.equal(tasks.rows[0]!.n, 1, 'only the good submit stored a task');
    });
  });
});
