import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AppError } from '../../src/errors.ts';
import { fetchInputUrl } from '../../src/inputs/fetch-url.ts';
import type { FetchInputUrlOptions } from '../../src/inputs/fetch-url.ts';
import type { HostLookup } from '../../src/inputs/guarded-connector.ts';

// Every request in this file goes to a server on 127.0.0.1. Host names are resolved by an injected
// lookup that only ever answers loopback addresses, so no packet or DNS query leaves the machine.
// Refusals of non-loopback targets are covered in address-policy.test.ts without opening sockets.

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3, 4]);

const toLoopback: HostLookup = async () => [{ address: '127.0.0.1', family: 4 }];

describe('fetchInputUrl', () => {
  let server: Server;
  let port: number;
  let base: string;
  const seen: { path: string; authorization: string | undefined }[] = [];

  before(async () => {
    server = createServer(handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    seen.push({ path: url.pathname, authorization: req.headers.authorization });
    switch (url.pathname) {
      case '/image.png':
        res.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
        return;
      case '/redirect':
        res.writeHead(302, { location: url.searchParams.get('to') ?? '/image.png' }).end();
        return;
      case '/loop':
        res.writeHead(301, { location: '/loop' }).end();
        return;
      case '/no-location':
        res.writeHead(302).end();
        return;
      case '/big-chunked': {
        res.writeHead(200, { 'content-type': 'image/png' });
        const chunk = Buffer.alloc(16 * 1024, 7);
        let sent = 0;
        const pump = (): void => {
          while (sent < 64 && !res.destroyed) {
            sent++;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
        return;
      }
      case '/big-declared':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(10 * 1024 * 1024) });
        res.write(Buffer.alloc(1024));
        return; // never finishes: the client must refuse on the header alone
      case '/slow-headers':
        return; // never answers
      case '/slow-body':
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': '100' });
        res.write(Buffer.alloc(10));
        return; // stalls mid-body
      case '/auth':
        res.writeHead(200, { 'content-type': 'text/plain' }).end(req.headers.authorization ?? 'none');
        return;
      default: {
        const status = /^\/status\/(\d{3})$/.exec(url.pathname)?.[1];
        res
          .writeHead(status === undefined ? 404 : Number(status), { 'content-type': 'text/plain' })
          .end('nope');
      }
    }
  }

  function options(overrides: Partial<FetchInputUrlOptions> = {}): FetchInputUrlOptions {
    return { maxBytes: 100 * 1024, timeoutMs: 2000, lookup: toLoopback, ...overrides };
  }

  async function assertRefusedWithoutRequest(
    url: string,
    overrides: Partial<FetchInputUrlOptions> = {},
  ): Promise<void> {
    const before = seen.length;
    await assert.rejects(fetchInputUrl(url, options(overrides)), isCode('input_url_forbidden'), url);
    assert.equal(seen.length, before, `${url} must not reach the server`);
  }

  describe('allowed targets', () => {
    it('downloads from a loopback server when allowPrivate is set', async () => {
      const result = await fetchInputUrl(`${base}/image.png`, options({ allowPrivate: true }));
      assert.deepEqual(result.data, PNG);
      assert.equal(result.contentType, 'image/png');
      assert.equal(result.finalUrl, `${base}/image.png`);
    });

    it('downloads from a host listed in allowHosts', async () => {
      const result = await fetchInputUrl(
        `http://images.internal:${port}/image.png`,
        options({ allowHosts: ['images.internal'] }),
      );
      assert.deepEqual(result.data, PNG);
      assert.equal(result.finalUrl, `http://images.internal:${port}/image.png`);
    });

    it('follows redirects within the limit and reports the final URL', async () => {
      const result = await fetchInputUrl(`${base}/redirect?to=/image.png`, options({ allowPrivate: true }));
      assert.deepEqual(result.data, PNG);
      assert.equal(result.finalUrl, `${base}/image.png`);
    });
  });

  describe('refused targets', () => {
    it('refuses a loopback URL by default', async () => {
      await assertRefusedWithoutRequest(`${base}/image.png`);
      await assertRefusedWithoutRequest(`http://localhost:${port}/image.png`);
    });

    it('refuses odd IPv4 notations and IPv6 forms of loopback', async () => {
      for (const host of [
        '127.1',
        '0x7f.1',
        '2130706433',
        '0177.0.0.1',
        '0x7f000001',
        '127.000.000.001',
        '[::ffff:127.0.0.1]',
        '[::ffff:7f00:1]',
        '[::1]',
        '[0:0:0:0:0:0:0:1]',
        '[64:ff9b::127.0.0.1]',
        '0',
      ]) {
        await assertRefusedWithoutRequest(`http://${host}:${port}/image.png`);
      }
    });

    it('refuses a host name that resolves to loopback', async () => {
      await assertRefusedWithoutRequest(`http://innocent.test:${port}/image.png`);
      await assertRefusedWithoutRequest(`http://innocent.test:${port}/image.png`, {
        lookup: async () => [{ address: '::ffff:127.0.0.1', family: 6 }],
      });
    });

    it('refuses schemes other than http and https', async () => {
      for (const url of [
        'file:///etc/passwd',
        'ftp://127.0.0.1/x.png',
        'data:image/png;base64,iVBORw0KGgo=',
        'gopher://127.0.0.1:70/',
      ]) {
        await assertRefusedWithoutRequest(url, { allowPrivate: true });
      }
    });

    it('refuses a redirect from an allowed server to a loopback target', async () => {
      const allowed = { allowHosts: ['files.test'] };
      for (const target of [
        `http://127.0.0.1:${port}/image.png`,
        `http://127.1:${port}/image.png`,
        `http://[::1]:${port}/image.png`,
        `http://sneaky.test:${port}/image.png`,
      ]) {
        const before = seen.length;
        await assert.rejects(
          fetchInputUrl(
            `http://files.test:${port}/redirect?to=${encodeURIComponent(target)}`,
            options(allowed),
          ),
          isCode('input_url_forbidden'),
          target,
        );
        assert.deepEqual(
          seen.slice(before).map((s) => s.path),
          ['/redirect'],
          target,
        );
      }
    });

    it('refuses a redirect to a non-http scheme', async () => {
      await assert.rejects(
        fetchInputUrl(
          `${base}/redirect?to=${encodeURIComponent('file:///etc/passwd')}`,
          options({ allowPrivate: true }),
        ),
        isCode('input_url_forbidden'),
      );
    });

    it('refuses an unparseable URL as invalid input', async () => {
      await assert.rejects(fetchInputUrl('not a url', options()), isCode('invalid_input'));
      await assert.rejects(fetchInputUrl('/relative/path.png', options()), isCode('invalid_input'));
    });
  });

  describe('failures', () => {
    it('fails on too many redirects', async () => {
      await assert.rejects(
        fetchInputUrl(`${base}/loop`, options({ allowPrivate: true, maxRedirects: 2 })),
        (error: unknown) => {
          return (
            isCode('input_fetch_failed')(error) &&
            /redirected more than 2 times/.test((error as Error).message)
          );
        },
      );
      await assert.rejects(
        fetchInputUrl(`${base}/no-location`, options({ allowPrivate: true })),
        isCode('input_fetch_failed'),
      );
    });

    it('fails on a non-2xx status, naming it', async () => {
      for (const status of [404, 500, 403, 304]) {
        await assert.rejects(
          fetchInputUrl(`${base}/status/${status}`, options({ allowPrivate: true })),
          (error: unknown) => {
            return isCode('input_fetch_failed')(error) && (error as Error).message.includes(`HTTP ${status}`);
          },
        );
      }
    });

    it('aborts a streamed body past maxBytes', async () => {
      await assert.rejects(
        fetchInputUrl(`${base}/big-chunked`, options({ allowPrivate: true, maxBytes: 100 * 1024 })),
        (error: unknown) =>
          isCode('input_fetch_failed')(error) && /102400-byte limit/.test((error as Error).message),
      );
      const result = await fetchInputUrl(
        `${base}/big-chunked`,
        options({ allowPrivate: true, maxBytes: 1024 * 1024 }),
      );
      assert.equal(result.data.length, 64 * 16 * 1024);
    });

    it('refuses a declared Content-Length past maxBytes without reading the body', async () => {
      const started = Date.now();
      await assert.rejects(
        fetchInputUrl(
          `${base}/big-declared`,
          options({ allowPrivate: true, maxBytes: 1024 * 1024, timeoutMs: 5000 }),
        ),
        (error: unknown) => isCode('input_fetch_failed')(error) && /limit/.test((error as Error).message),
      );
      assert.ok(Date.now() - started < 2000);
    });

    it('times out when the server never answers, or stalls mid-body', async () => {
      for (const path of ['/slow-headers', '/slow-body']) {
        const started = Date.now();
        await assert.rejects(
          fetchInputUrl(`${base}${path}`, options({ allowPrivate: true, timeoutMs: 300 })),
          (error: unknown) => {
            return isCode('input_fetch_failed')(error) && /within 300 ms/.test((error as Error).message);
          },
        );
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 250 && elapsed < 1500, `${path} took ${elapsed} ms`);
      }
    });

    it('times out when DNS never answers', async () => {
      const never: HostLookup = () => new Promise(() => undefined);
      await assert.rejects(
        fetchInputUrl(`http://hang.test:${port}/image.png`, options({ timeoutMs: 200, lookup: never })),
        isCode('input_fetch_failed'),
      );
    });

    it('fails cleanly when nothing listens on the port', async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const closedPort = (closed.address() as AddressInfo).port;
      await new Promise<void>((resolve) => closed.close(() => resolve()));
      await assert.rejects(
        fetchInputUrl(`http://127.0.0.1:${closedPort}/x.png`, options({ allowPrivate: true })),
        (error: unknown) => {
          return isCode('input_fetch_failed')(error) && /ECONNREFUSED/.test((error as Error).message);
        },
      );
    });
  });

  describe('credentials in the URL', () => {
    it('never appear in error messages', async () => {
      const secretUrl = `http://alice:s3cret-pass@127.0.0.1:${port}/status/500?token=t0ken-value`;
      for (const overrides of [{}, { allowPrivate: true }]) {
        await assert.rejects(fetchInputUrl(secretUrl, options(overrides)), (error: unknown) => {
          assert.ok(error instanceof AppError);
          const text = `${error.message} ${String(error.cause instanceof Error ? error.cause.message : '')}`;
          assert.doesNotMatch(text, /s3cret-pass|alice|t0ken-value/);
          return true;
        });
      }
    });

    it('are sent as Basic auth to their own origin only', async () => {
      const own = await fetchInputUrl(
        `http://alice:s3cret@127.0.0.1:${port}/auth`,
        options({ allowPrivate: true }),
      );
      assert.equal(own.data.toString(), `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
      assert.doesNotMatch(own.finalUrl, /s3cret/);

      const target = `http://other.test:${port}/auth`;
      const redirected = await fetchInputUrl(
        `http://alice:s3cret@127.0.0.1:${port}/redirect?to=${encodeURIComponent(target)}`,
        options({ allowPrivate: true }),
      );
      assert.equal(redirected.data.toString(), 'none');
    });
  });
});

function isCode(code: string): (error: unknown) => boolean {
  return (error) => error instanceof AppError && error.code === code;
}
