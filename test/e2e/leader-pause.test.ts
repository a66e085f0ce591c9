import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
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

const LEASE_MS = 3000;
const TASKS = 12;
/**
 * How late after the paused leader's lease ran out the standby may take over, on the database's
 * clock. The standby tries every quarter lease; the rest is room for a loaded machine. A standby
 * blocked by the paused leader would not take over at all until it is resumed.
 */
const TAKEOVER_MARGIN_MS = 20_000;

/**
 * Test-only instrumentation, on the database's own clock: every write of the leader row, and every
 * admission with the term it carries beside the leader row as it stood when the admission ran
 * (a volatile trigger function sees the calling statement's own effects and everything committed).
 */
const INSTRUMENT = `
  CREATE TABLE test_leader_log (seq bigserial, holder text, term int, expires_at timestamptz,
                                at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE FUNCTION test_log_leader() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    INSERT INTO test_leader_log (holder, term, expires_at) VALUES (NEW.holder, NEW.term, NEW.expires_at);
    RETURN NEW;
  END $$;
  CREATE TRIGGER test_log_leader AFTER INSERT OR UPDATE ON scheduler_leader
    FOR EACH ROW EXECUTE FUNCTION test_log_leader();
  CREATE TABLE test_admissions (job_id text, term int, leader_holder text, leader_term int,
                                leader_expires_at timestamptz, at timestamptz NOT NULL DEFAULT clock_timestamp());
  CREATE FUNCTION test_log_admission() RETURNS trigger LANGUAGE plpgsql VOLATILE AS $$
  BEGIN
    INSERT INTO test_admissions (job_id, term, leader_holder, leader_term, leader_expires_at)
    SELECT NEW.id, NEW.admitted_term, holder, term, expires_at FROM scheduler_leader WHERE id = 1;
    RETURN NEW;
  END $$;
  CREATE TRIGGER test_log_admission AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'admitted' AND OLD.state IS DISTINCT FROM 'admitted')
    EXECUTE FUNCTION test_log_admission();`;

/**
 * Two scheduler candidates as real processes; the leader is frozen with SIGSTOP in the middle of a
 * load (a GC pause, a VM freeze): the standby must take over once the lease runs out, while the old
 * leader is still frozen, and admissions must go on. Resumed with SIGCONT, the old leader must step
 * down and never admit under its stale term.
 */
describe(
  'a leader paused mid-load does not block failover',
  { skip: PG_URL ? false : 'needs PostgreSQL' },
  () => {
    const procs: DarkroomProcess[] = [];
    let fake: FakeProviderHandle;
    let client: pg.Client;
    let drop: () => Promise<void>;
    let base: string;

    before(async () => {
      fake = await startFakeProvider({
        providers: [
          {
            name: 'main',
            keys: [{ id: 'k1', rpm: 100_000, concurrency: 4 }],
            latencyMs: 400,
            jitterMs: 100,
            errorRate: 0,
          },
        ],
      });
      const created = await createPostgresDatabase();
      drop = created.drop;
      const port = await freePort();
      const input = testConfigInput({
        server: { port, logLevel: 'warn' },
        limits: { maxRunningTasks: 40, perUserRunningTasks: 1 },
        providers: {
          main: {
            type: 'sim',
            concurrency: 4,
            keys: [{ id: 'k1', rpm: 100_000, concurrency: 4 }],
            baseUrl: fake.url,
            timeoutMs: 30_000,
          },
        },
        pipelines: {
          photography: {
            steps: [
              { name: 'generate', provider: 'main', batchSize: 1 },
              { name: 'store', concurrency: 3 },
            ],
          },
        },
        scheduler: { pollMs: 100, leaderLeaseMs: LEASE_MS },
        worker: { concurrency: 2, leaseMs: 10_000, heartbeatMs: 500 },
      });
      const file = writeConfigFile({ ...input, database: { url: created.url } });
      base = `http://127.0.0.1:${port}`;
      procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'api']));
      await waitReady(base, procs[0], 120_000);
      client = new pg.Client({ connectionString: created.url });
      client.on('error', () => {});
      await client.connect();
      await client.query(INSTRUMENT); // the API process has migrated; no scheduler runs yet
      for (let i = 0; i < 2; i++)
        procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'scheduler']));
      for (let i = 0; i < 2; i++) procs.push(spawnDarkroom(['serve', '--config', file, '--role', 'worker']));
      await waitFor(
        'two workers and a leader',
        async () => {
          const w = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM workers`);
          const l = await client.query(`SELECT 1 FROM scheduler_leader WHERE expires_at > now()`);
          return w.rows[0]!.n === 2 && l.rowCount === 1;
        },
        { timeoutMs: 120_000 },
      );
    });

    after(async () => {
      for (const p of procs) p.kill('SIGKILL');
      await Promise.all(procs.map((p) => p.exited));
      await client?.end();
      await fake?.close();
      await drop?.();
    });

    it('the standby takes over within the lease while the leader is frozen; resumed, the old leader admits nothing', async (t) => {
      const ids: string[] = [];
      for (let i = 0; i < TASKS; i++) {
        const r = await postJson(base, '/v1/tasks', {
          user_id: `p${i % 6}`,
          type: 'photography',
          plan: 'free',
          prompt: `pause ${i}`,
        });
        assert.equal(r.status, 202, JSON.stringify(r.body));
        ids.push(r.body.id as string);
      }
      const old = (
        await client.query<{ holder: string; term: number }>(
          'SELECT holder, term::int AS term FROM scheduler_leader',
        )
      ).rows[0]!;
      const leaderProc = procs.find((p) => old.holder.includes(`:${p.child.pid}:`));
      assert.ok(leaderProc, `leader ${old.holder} is one of the scheduler processes`);
      await waitFor(
        'the leader to be admitting',
        async () => {
          const r = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM test_admissions');
          return r.rows[0]!.n >= 3;
        },
        { timeoutMs: 120_000 },
      );

      leaderProc.kill('SIGSTOP');
      let resumed = false;
      try {
        const takeover = await waitFor(
          'a new leader while the old one is frozen',
          async () => {
            const r = await client.query<{ holder: string; term: number }>(
              `SELECT holder, term FROM test_leader_log WHERE holder <> $1 ORDER BY seq LIMIT 1`,
              [old.holder],
            );
            return r.rows[0];
          },
          { timeoutMs: 180_000, intervalMs: 100 },
        );
        assert.equal(leaderProc.child.exitCode, null, 'the old leader is still alive (frozen)');
        assert.ok(takeover.term > old.term, 'a takeover starts a new term');

        // On the database's clock: the new term began after the frozen leader's lease ran out, and
        // not long after.
        const timing = (
          await client.query<{ lease_end: Date; taken: Date; late_ms: number }>(
            `SELECT o.lease_end, n.taken, (extract(epoch FROM n.taken - o.lease_end) * 1000)::float8 AS late_ms
               FROM (SELECT max(expires_at) AS lease_end FROM test_leader_log WHERE holder = $1 AND term = $2) o,
                    (SELECT min(at) AS taken FROM test_leader_log WHERE term = $3) n`,
            [old.holder, old.term, takeover.term],
          )
        ).rows[0]!;
        t.diagnostic(
          `takeover ${Math.round(timing.late_ms)} ms after the frozen leader's lease ended (DB clock)`,
        );
        assert.ok(timing.late_ms >= 0, `no overlap: taken ${timing.late_ms} ms after the lease ended`);
        assert.ok(
          timing.late_ms <= TAKEOVER_MARGIN_MS,
          `taken over ${Math.round(timing.late_ms)} ms after the frozen leader's lease (${LEASE_MS} ms) ran out`,
        );

        await waitFor(
          'admissions under the new term while the old leader is frozen',
          async () => {
            const r = await client.query<{ n: number }>(
              'SELECT count(*)::int AS n FROM test_admissions WHERE term = $1',
              [takeover.term],
            );
            return r.rows[0]!.n > 0;
          },
          { timeoutMs: 180_000 },
        );

        leaderProc.kill('SIGCONT');
        resumed = true;
        await waitFor(
          'the old leader to step down',
          () => /scheduler leadership lost/.test(leaderProc.output()),
          {
            timeoutMs: 120_000,
          },
        );
      } finally {
        if (!resumed) leaderProc.kill('SIGCONT');
      }

      const done = await waitFor(
        'all tasks to end',
        async () => {
          const r = await client.query<{ state: string }>(
            'SELECT state FROM tasks WHERE id = ANY($1::text[])',
            [ids],
          );
          return r.rows.every((t) => t.state !== 'queued' && t.state !== 'running') ? r.rows : undefined;
        },
        { timeoutMs: 300_000, intervalMs: 250 },
      ).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\n${procs.map((p) => p.output()).join('\n')}`);
      });
      assert.deepEqual(
        done.map((t) => t.state),
        Array(TASKS).fill('succeeded'),
      );

      // Every admission carries the term of the leader row as it stood at that moment, by its holder,
      // inside that holder's lease: none under the stale term after the takeover, none by the resumed leader.
      const admissions = await client.query<{
        job_id: string;
        term: number;
        leader_term: number;
        late: boolean;
      }>(`SELECT job_id, term, leader_term, at > leader_expires_at AS late FROM test_admissions ORDER BY at`);
      const jobs = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs');
      assert.ok(admissions.rows.length >= jobs.rows[0]!.n, 'every job was admitted at least once');
      const wrong = admissions.rows.filter((a) => a.term !== a.leader_term || a.late);
      assert.deepEqual(wrong, [], 'no admission under a term other than the current one');
      const stale = await client.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM test_admissions a
          WHERE a.term = $1 AND a.at > (SELECT min(at) FROM test_leader_log WHERE term > $1)`,
        [old.term],
      );
      assert.equal(stale.rows[0]!.n, 0, 'nothing admitted under the stale term after the takeover');
    });
  },
);
