import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { testConfigInput, tempDir } from '../helpers/config.ts';
import { createPostgresDatabase, describeEachDb } from '../helpers/db.ts';
import { freePort, startServe, stopCleanly, type DarkroomProcess } from '../helpers/process.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const REGISTER = path.join(ROOT, 'test', 'helpers', 'module-log', 'register.mjs');
const DIST_URL = pathToFileURL(path.join(ROOT, 'dist')).href;

/**
 * The server as users run it (`npm start`): compiled by scripts/build.mjs (what `npm install`
 * and `npm start` run), started through bin/darkroom.cjs with nothing telling it to run the
 * sources, so the launcher picks dist/. A module hook records every ES module it loads (main
 * thread and worker threads: the forecast's and, on PGlite, the database's), which says where
 * its code came from.
 */
describeEachDb('the compiled server (dist/) runs without tsx', (kind) => {
  let proc: DarkroomProcess;
  let base: string;
  let databaseUrl: string | undefined;
  let drop: (() => Promise<void>) | undefined;
  let moduleLog: string;

  before(async () => {
    const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), '--if-stale'], {
      encoding: 'utf8',
    });
    assert.equal(build.status, 0, `the build failed:\n${build.stdout}${build.stderr}`);
    const port = await freePort();
    if (kind === 'postgres') ({ url: databaseUrl, drop } = await createPostgresDatabase());
    // The key takes two requests a minute: the first task's two calls use them, so the later
    // tasks stay queued for about a minute whatever the machine's load, long enough for the
    // forecast thread to place them.
    const input = testConfigInput({
      server: { port, logLevel: 'warn' },
      limits: { maxRunningTasks: 1 },
      providers: { main: { keys: [{ id: 'k1', rpm: 2, concurrency: 10 }] } },
    });
    moduleLog = path.join(tempDir('darkroom-compiled-'), 'modules.txt');
    ({ proc, base } = await startServe(input, port, databaseUrl, {
      DARKROOM_FROM_SOURCE: '0',
      MODULE_LOG_FILE: moduleLog,
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${REGISTER}`,
    }));
  });
  after(async () => {
    await stopCleanly(proc);
    await drop?.();
  });

  it('answers health, takes and reads tasks, and forecasts the queue in its worker thread', async () => {
    assert.deepEqual((await getJson(base, '/healthz')).body, { ok: true });

    const submitted = [];
    for (let i = 0; i < 3; i++) {
      const s = await postJson(base, '/v1/tasks', {
        user_id: `user-${i}`,
        type: 'photography',
        plan: 'free',
        prompt: `portrait ${i}`,
      });
      assert.equal(s.status, 202, JSON.stringify(s.body));
      submitted.push(s.body.id as string);
    }
    const last = submitted[2]!;
    const read = await getJson(base, `/v1/tasks/${last}`);
    assert.equal(read.status, 200);
    assert.equal(read.body.id, last);
    // The leader's forecast thread (dist/scheduler/forecaster-worker.js) simulates the queue and
    // writes each queued task's place: the last task, behind two others, gets a simulated ETA.
    const forecast = await waitFor('a simulated forecast of the last task', async () => {
      const body = (await getJson(base, `/v1/tasks/${last}`)).body;
      return body.state === 'queued' && body.eta_basis === 'simulated' ? body : undefined;
    });
    assert.equal(typeof forecast.position, 'number');
    assert.ok((forecast.position as number) >= 1, JSON.stringify(forecast));
    assert.equal(typeof forecast.eta_seconds, 'number');

    if (databaseUrl) {
      // Every migration of src/store/migrations ran (the compiled store reads the SQL there).
      const files = readdirSync(path.join(ROOT, 'src', 'store', 'migrations')).filter((f) =>
        f.endsWith('.sql'),
      );
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM schema_migrations');
        assert.equal(Number(rows[0]!.n), files.length);
      } finally {
        await client.end();
      }
    }

    const urls = readFileSync(moduleLog, 'utf8').split('\n').filter(Boolean);
    const own = urls.filter(
      (u) => u.startsWith(`${pathToFileURL(ROOT).href}/`) && !u.includes('/node_modules/'),
    );
    assert.ok(own.includes(`${DIST_URL}/cli/main.js`), 'the CLI ran from dist/');
    assert.ok(
      own.includes(`${DIST_URL}/scheduler/forecaster-worker.js`),
      'the forecast thread ran from dist/',
    );
    if (kind === 'pglite')
      assert.ok(own.includes(`${DIST_URL}/store/pglite-worker.js`), 'the PGlite thread ran from dist/');
    assert.deepEqual(
      urls.filter((u) => u.endsWith('.ts')),
      [],
      'no TypeScript module was loaded',
    );
    assert.deepEqual(
      urls.filter((u) => u.includes('/node_modules/tsx/')),
      [],
      'tsx was not loaded',
    );
  });
});
