import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { PG_URL, createPostgresDatabase } from '../helpers/db.ts';
import { testConfigInput } from '../helpers/config.ts';
import {
  freePort,
  spawnDarkroom,
  waitReady,
  writeConfigFile,
  type DarkroomProcess,
} from '../helpers/process.ts';
import { postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { startReceiver, type Receiver } from './receiver.ts';

/**
 * Separate processes on one PostgreSQL: API + scheduler, and a worker that is killed with
 * SIGKILL while the receiver holds its webhook request open. A second worker sends the same
 * message (same webhook-id, same signed body) once the first one's claim lapses.
 */
describe(
  'webhook delivery survives a killed worker',
  { skip: PG_URL ? false : 'needs PostgreSQL (several processes share one database)' },
  () => {
    const procs: DarkroomProcess[] = [];
    let client: pg.Client;
    let drop: () => Promise<void>;
    let receiver: Receiver;
    let base: string;
    let file: string;
    let home: string;

    before(async () => {
      let databaseUrl: string;
      ({ url: databaseUrl, drop } = await createPostgresDatabase());
      // The first request is never answered: its sender is killed while it waits.
      receiver = await startReceiver((n) => (n === 0 ? 'hang' : 200));
      const port = await freePort();
      const input = testConfigInput({
        server: { port, logLevel: 'warn' },
        inputs: { allowPrivateUrls: true },
        webhooks: { timeoutMs: 1500, backoffBaseMs: 50, pollMs: 100 },
      });
      home = input.home as string;
      file = writeConfigFile({ ...input, database: { url: databaseUrl } });
      base = `http://127.0.0.1:${port}`;
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'api,scheduler']));
      await waitReady(base, procs[0]);
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'worker']));
      client = new pg.Client({ connectionString: databaseUrl });
      client.on('error', () => {});
      await client.connect();
    });

    after(async () => {
      for (const p of procs) p.kill('SIGKILL');
      await Promise.all(procs.map((p) => p.exited));
      await client?.end();
      await receiver?.close();
      await drop?.();
    });

    it('is sent again with the same id after the sending worker dies mid-request', async () => {
      const res = await postJson(base, '/v1/tasks', {
        user_id: 'crash-wh',
        type: 'photography',
        plan: 'free',
        webhook_url: `${receiver.url}/hook`,
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      await waitFor('the first attempt to arrive', () => receiver.received.length >= 1, {
        timeoutMs: 60_000,
      });
      procs[1]!.kill('SIGKILL');
      await procs[1]!.exited;
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'worker']));
      await waitFor('the second attempt', () => receiver.received.length >= 2, { timeoutMs: 60_000 });
      const [first, second] = receiver.received;
      assert.equal(second!.headers['webhook-id'], first!.headers['webhook-id']);
      assert.equal(second!.body, first!.body);
      const secret = readFileSync(path.join(home, 'webhook-secret'), 'utf8').trim();
      const payload = new Webhook(secret).verify(second!.body, second!.headers) as {
        type: string;
        data: { state: string };
      };
      assert.equal(payload.type, 'task.finished');
      assert.equal(payload.data.state, 'succeeded');
      const row = await waitFor('the delivery to be recorded', async () => {
        const r = await client.query<{ state: string; attempts: number }>(
          'SELECT state, attempts FROM webhook_deliveries WHERE id = $1',
          [first!.headers['webhook-id']],
        );
        return r.rows[0]?.state === 'delivered' ? r.rows[0] : undefined;
      });
      assert.equal(row.attempts, 2);
    });
  },
);
