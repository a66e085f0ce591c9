import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startServer } from '../../src/server.ts';
import { testConfig } from '../helpers/config.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { startTcpProxy } from '../helpers/tcp-proxy.ts';
import pino from 'pino';

/**
 * A request that loses the database (a PostgreSQL restart, a cut network) answers 503
 * `database_unavailable` with Retry-After, not 500 `internal`: the chaos suite saw 18–36 such
 * 500s per run during restarts (docs/chaos.md), which tell a client nothing about retrying.
 * The API reaches PostgreSQL through a proxy the test cuts.
 */
describe(
  'the database goes away under a request [postgres]',
  { skip: PG_URL ? false : 'needs PostgreSQL' },
  () => {
    it('answers 503 database_unavailable with Retry-After, and 202 again once it is back', async () => {
      const created = await createPostgresDatabase();
      const target = new URL(created.url);
      const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
      const config = testConfig({ database: { url: proxy.url(created.url), poolSize: 2 } });
      const server = await startServer(config, { roles: ['api'], log: pino({ level: 'silent' }) });
      try {
        const body = { user_id: 'dbu', type: 'photography', plan: 'free' };
        assert.equal((await postJson(server.url!, '/v1/tasks', body)).status, 202);
        proxy.cut();
        const refused = await postJson(server.url!, '/v1/tasks', body);
        assert.equal(refused.status, 503, JSON.stringify(refused.body));
        assert.deepEqual(refused.body, {
          error: { code: 'database_unavailable', message: 'the database is unavailable; retry shortly' },
        });
        assert.equal(refused.headers.get('retry-after'), '2');
        const read = await getJson(server.url!, '/v1/tasks?limit=1');
        assert.equal(read.status, 503);
        proxy.restore();
        const again = await postJson(server.url!, '/v1/tasks', body);
        assert.equal(again.status, 202, JSON.stringify(again.body));
      } finally {
        proxy.restore();
        await server.stop();
        await proxy.close();
        await created.drop();
      }
    });
  },
);
