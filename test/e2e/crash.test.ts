import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
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

/**
 * Separate processes on one PostgreSQL: an API + scheduler process and two worker processes.
 * One worker is killed with SIGKILL while it runs jobs; its leases expire and the other worker
 * finishes them. Then the database drops every connection; the processes reconnect.
 */
describe(
  'crashes',
  { skip: PG_URL ? false : 'needs PostgreSQL (several processes share one database)' },
  () => {
    const procs: DarkroomProcess[] = [];
    let client: pg.Client;
    let drop: () => Promise<void>;
    let base: string;
    let databaseUrl: string;

    before(async () => {
      ({ url: databaseUrl, drop } = await createPostgresDatabase());
      const port = await freePort();
      const config = {
        ...testConfigInput({
          server: { port, logLevel: 'warn' },
          providers: { main: { sim: { latencyMs: 700, jitterMs: 100 } } },
          worker: { concurrency: 4, leaseMs: 1500, heartbeatMs: 250 },
          pipelines: {
            photography: {
              steps: [
                { name: 'generate', provider: 'main', batchSize: 5 },
                { name: 'store', concurrency: 5 },
              ],
            },
          },
        }),
        database: { url: databaseUrl },
      };
      const file = writeConfigFile(config);
      base = `http://127.0.0.1:${port}`;
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'api,scheduler']));
      await waitReady(base, procs[0]);
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'worker']));
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'worker']));
      client = new pg.Client({ connectionString: databaseUrl });
      client.on('error', () => {});
      await client.connect();
      await waitFor('both workers to register', async () => {
        const r = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM workers WHERE roles = 'worker'`,
        );
        return r.rows[0]!.n === 2;
      });
    });

    after(async () => {
      for (const p of procs) p.kill('SIGKILL');
      await Promise.all(procs.map((p) => p.exited));
      await client?.end();
      await drop?.();
    });

    async function taskStates(ids: string[]) {
      const r = await client.query<{ id: string; state: string; images_done: number; images_total: number }>(
        'SELECT id, state, images_done, images_total FROM tasks WHERE id = ANY($1::text[])',
        [ids],
      );
      return r.rows;
    }

    it("finishes a SIGKILLed worker's jobs elsewhere after lease expiry, losing and duplicating nothing", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await postJson(base, '/v1/tasks', { user_id: `k${i}`, type: 'photography', plan: 'start' });
        assert.equal(r.status, 202);
        ids.push(r.body.id as string);
      }
      const victim = procs[1]!;
      const victimPid = victim.child.pid!;
      const victimJobs = await waitFor('the victim to run jobs', async () => {
        const r = await client.query<{ id: string }>(
          `SELECT id FROM jobs WHERE state = 'running' AND worker_id LIKE $1`,
          [`worker:%:${victimPid}:%`],
        );
        return r.rows.length > 0 ? r.rows.map((x) => x.id) : undefined;
      });
      victim.kill('SIGKILL');
      assert.equal(await victim.exited, 'SIGKILL');

      const rows = await waitFor(
        'all tasks to end',
        async () => {
          const states = await taskStates(ids);
          return states.every((s) => s.state !== 'queued' && s.state !== 'running') ? states : undefined;
        },
        { timeoutMs: 90_000 },
      );
      for (const s of rows) assert.deepEqual([s.state, s.images_done], ['succeeded', s.images_total]);
      assert.equal(rows.length, 4, 'no task lost');
      const images = await client.query<{ task_id: string; n: number; distinct_idx: number }>(
        'SELECT task_id, count(*)::int AS n, count(DISTINCT index)::int AS distinct_idx FROM images WHERE task_id = ANY($1::text[]) GROUP BY task_id',
        [ids],
      );
      for (const r of images.rows) assert.deepEqual([r.n, r.distinct_idx], [30, 30]);
      const rerun = await client.query<{ worker_id: string; attempts: number; state: string }>(
        'SELECT worker_id, attempts, state FROM jobs WHERE id = ANY($1::text[])',
        [victimJobs],
      );
      for (const j of rerun.rows) {
        assert.equal(j.state, 'succeeded');
        assert.ok(!j.worker_id.includes(`:${victimPid}:`), 'finished by another worker');
        assert.ok(j.attempts >= 2, 'the killed attempt counted, and the job ran again');
      }
    });

    it('survives the database dropping every connection', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await postJson(base, '/v1/tasks', { user_id: `d${i}`, type: 'photography', plan: 'start' });
        ids.push(r.body.id as string);
      }
      const dbName = new URL(databaseUrl).pathname.slice(1);
      await client.end();
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
        [dbName],
      );
      await admin.end();
      client = new pg.Client({ connectionString: databaseUrl });
      client.on('error', () => {});
      await client.connect();
      const rows = await waitFor(
        'tasks to end after the reconnect',
        async () => {
          const states = await taskStates(ids);
          return states.every((s) => s.state === 'succeeded') ? states : undefined;
        },
        { timeoutMs: 90_000 },
      ).catch(async (error: unknown) => {
        const jobs = await client.query(
          `SELECT kind, state, attempts, error FROM jobs WHERE task_id = ANY($1::text[]) AND state <> 'succeeded'`,
          [ids],
        );
        const tasks = await taskStates(ids);
        const leader = await client.query('SELECT holder, expires_at > now() AS live FROM scheduler_leader');
        throw new Error(
          `${(error as Error).message}\ntasks: ${JSON.stringify(tasks)}\njobs: ${JSON.stringify(jobs.rows)}\nleader: ${JSON.stringify(leader.rows)}\n${procs.map((p) => p.output().slice(-3000)).join('\n---\n')}`,
        );
      });
      assert.equal(rows.length, 2);
      for (const p of [procs[0]!, procs[2]!])
        assert.equal(p.child.exitCode, null, `a process exited:\n${p.output()}`);
      const again = await postJson(base, '/v1/tasks', {
        user_id: 'after',
        type: 'photography',
        plan: 'free',
      });
      assert.equal(again.status, 202);
    });
  },
);
