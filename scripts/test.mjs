#!/usr/bin/env node
// Runs the test suites with node's test runner (through tsx, on the TypeScript sources).
//
// PostgreSQL: DATABASE_URL, else the local server at postgres://postgres@127.0.0.1:5432/test when
// it answers. Without one, the PostgreSQL tests are skipped (said plainly) and everything PGlite
// can run still runs; DARKROOM_REQUIRE_POSTGRES=1 (set by .ci/run) turns a missing PostgreSQL
// into a failure instead.
//
// Usage: node scripts/test.mjs [suite...]   suites: unit, integration, e2e (default: all three)
//        node scripts/test.mjs path/to/file.test.ts ...
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const SUITES = {
  unit: [
    'test/policy',
    'test/config',
    'test/images',
    'test/providers',
    'test/inputs',
    'test/sim',
    'test/unit',
    'test/contract',
  ],
  integration: ['test/store', 'test/api', 'test/storage', 'test/pipeline', 'test/webhooks', 'test/alerts'],
  e2e: ['test/e2e'],
};

function walk(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

async function postgresUrl() {
  const candidates = process.env.DATABASE_URL
    ? [process.env.DATABASE_URL]
    : ['postgres://postgres@127.0.0.1:5432/test'];
  for (const url of candidates) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      return url;
    } catch (error) {
      await client.end().catch(() => {});
      console.log(
        `PostgreSQL at ${url.replace(/\/\/[^@/]*@/, '//***@')} does not answer (${error.message}).`,
      );
    }
  }
  return undefined;
}

const args = process.argv.slice(2);
const files = args.some((a) => a.endsWith('.ts'))
  ? args
  : (args.length ? args : ['unit', 'integration', 'e2e']).flatMap((s) => {
      if (!SUITES[s]) {
        console.error(`unknown suite "${s}"; suites: ${Object.keys(SUITES).join(', ')}`);
        process.exit(2);
      }
      return SUITES[s].flatMap(walk);
    });

const url = await postgresUrl();
// The servers the tests start (bin/darkroom.cjs) run the TypeScript sources through tsx, as the
// tests themselves do, whatever dist/ holds; test/e2e/compiled-server.test.ts runs dist/.
const env = { ...process.env, DARKROOM_FROM_SOURCE: '1' };
if (url) {
  env.DARKROOM_TEST_PG_URL = url;
  console.log('Running the tests on PostgreSQL and on PGlite.');
} else if (process.env.DARKROOM_REQUIRE_POSTGRES === '1') {
  console.error('DARKROOM_REQUIRE_POSTGRES=1 but no PostgreSQL answers: failing instead of skipping.');
  process.exit(1);
} else {
  delete env.DARKROOM_TEST_PG_URL;
  console.log('No PostgreSQL: running everything PGlite can run; the PostgreSQL tests are SKIPPED.');
}

const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=480000', ...files],
  { stdio: 'inherit', env },
);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
