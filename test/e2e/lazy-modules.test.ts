import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { testConfigInput, tempDir } from '../helpers/config.ts';
import {
  freePort,
  spawnDarkroom,
  waitReady,
  writeConfigFile,
  type DarkroomProcess,
} from '../helpers/process.ts';

const REGISTER = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'helpers',
  'module-log',
  'register.mjs',
);

/**
 * Starts `darkroom serve` (all roles, embedded database) with `storage` and returns the URLs of
 * the ES modules it loaded, as a module hook recorded them (not a mock: the process's own loader).
 */
async function modulesLoaded(storage: Record<string, unknown>, procs: DarkroomProcess[]): Promise<string[]> {
  const port = await freePort();
  const file = writeConfigFile(testConfigInput({ server: { port, logLevel: 'warn' }, storage }));
  const log = path.join(tempDir('darkroom-modules-'), 'modules.txt');
  const proc = spawnDarkroom(['serve', '--config', file], {
    MODULE_LOG_FILE: log,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${REGISTER}`,
  });
  procs.push(proc);
  await waitReady(`http://127.0.0.1:${port}`, proc);
  proc.kill('SIGTERM');
  await proc.exited;
  return readFileSync(log, 'utf8').split('\n').filter(Boolean);
}

const fromPackage = (urls: string[], name: string) =>
  urls.filter((u) => u.includes(`/node_modules/${name}/`));

describe('start-up loads only the drivers its configuration uses', () => {
  const procs: DarkroomProcess[] = [];
  after(() => {
    for (const p of procs) if (p.child.exitCode === null) p.kill('SIGKILL');
  });

  it('local storage and the embedded database: no AWS SDK, no node-postgres', async () => {
    const urls = await modulesLoaded({ driver: 'local' }, procs);
    // The record is real: the server's own modules and packages are in it.
    assert.ok(urls.some((u) => u.endsWith('/src/storage/local.ts')));
    assert.ok(fromPackage(urls, 'fastify').length > 0);
    assert.deepEqual(fromPackage(urls, '@aws-sdk/client-s3'), []);
    assert.deepEqual(fromPackage(urls, 'pg'), []);
  });

  it('S3 storage loads the AWS SDK', async () => {
    const urls = await modulesLoaded(
      {
        driver: 's3',
        bucket: 'images',
        endpoint: 'http://127.0.0.1:9',
        region: 'us-east-1',
        accessKeyId: 'id',
        secretAccessKey: 'secret',
        forcePathStyle: true,
      },
      procs,
    );
    assert.ok(fromPackage(urls, '@aws-sdk/client-s3').length > 0);
  });
});
