import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, redactConfig, resolveConfig } from '../../src/config/load.ts';
import { tempDir } from '../helpers/config.ts';

const EXAMPLE = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'examples',
  'darkroom.yaml',
);

function configFile(text: string, name = 'darkroom.yaml'): string {
  const file = path.join(tempDir(), name);
  writeFileSync(file, text);
  return file;
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.message;
  }
  return assert.fail('expected a ConfigError');
}

describe('configuration', () => {
  it('loads the documented example as-is', () => {
    const config = loadConfig({ file: EXAMPLE, env: {} });
    assert.equal(config.server.port, 8080);
    assert.equal(config.limits.maxRunningTasks, 40);
    assert.equal(config.plans.pro!.images, 70);
    assert.equal(config.providers.main!.keys[0]!.rpm, 360);
    assert.equal(config.providers.main!.sim.latencyMs, 8000);
    const photography = config.pipelines.photography!;
    assert.deepEqual(
      photography.steps.map((s) => [s.name, s.kind]),
      [
        ['beautify', 'transform'],
        ['generate', 'generate'],
        ['store', 'store'],
      ],
    );
    assert.deepEqual(config.pipelines.fitting!.inputs, ['person', 'garment']);
    assert.equal(config.database.url, undefined, 'no URL: embedded PGlite');
  });

  it('starts with working defaults and no file at all', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.server.port, 8080);
    assert.ok(config.pipelines.photography && config.pipelines.fitting);
    assert.equal(config.providers.main!.type, 'sim');
    assert.ok(path.isAbsolute(config.home));
  });

  it('takes environment and flag overrides, flags last', () => {
    const env = { PORT: '9000', DATABASE_URL: 'postgres://u:p@db/x', DARKROOM_HOME: '/tmp/dr-home' };
    const config = loadConfig({ file: EXAMPLE, env });
    assert.equal(config.server.port, 9000);
    assert.equal(config.database.url, 'postgres://u:p@db/x');
    assert.equal(config.home, '/tmp/dr-home');
    const flagged = loadConfig({ file: EXAMPLE, env, overrides: { port: 9100, home: '/tmp/other' } });
    assert.equal(flagged.server.port, 9100);
    assert.equal(flagged.home, '/tmp/other');
    assert.match(
      configError(() => loadConfig({ env: { PORT: 'eighty' } })),
      /PORT must be a number/,
    );
  });

  it('names the bad field precisely', () => {
    const cases: Array<[string, RegExp]> = [
      ['limits: { maxRunningTasks: -1 }', /limits\.maxRunningTasks/],
      [
        'providers: { main: { type: sim, keys: [{ id: k1, rpm: "fast" }] } }\npipelines: { p: { steps: [{ name: g, provider: main, batchSize: 5 }, { name: store }] } }',
        /providers\.main\.keys\[0\]\.rpm/,
      ],
      ['providers: { main: { type: dalle, keys: [{ id: k1 }] } }', /providers\.main\.type/],
      ['plans: { free: { images: 2, credits: 2, colour: red } }', /plans\.free.*colour/],
      [
        'pipelines: { p: { steps: [{ name: g, provider: nope, batchSize: 5 }, { name: store }] } }',
        /pipelines\.p\.steps\[0\]\.provider: unknown provider "nope"/,
      ],
      [
        'pipelines: { p: { steps: [{ name: b, provider: main, calls: 1 }] } }',
        /pipelines\.p\.steps: one step must be a generate step/,
      ],
      ['serverr: { port: 1 }', /serverr/],
    ];
    for (const [yaml, pattern] of cases) {
      assert.match(
        configError(() => loadConfig({ file: configFile(yaml), env: {} })),
        pattern,
        yaml,
      );
    }
    assert.match(
      configError(() => loadConfig({ file: configFile('limits: [1, 2'), env: {} })),
      /not valid YAML/,
    );
    assert.match(
      configError(() => loadConfig({ file: '/nonexistent/darkroom.yaml', env: {} })),
      /cannot read config file/,
    );
  });

  it('loads JSON as well as YAML', () => {
    const config = loadConfig({
      file: configFile(JSON.stringify({ limits: { maxRunningTasks: 7 } }), 'c.json'),
      env: {},
    });
    assert.equal(config.limits.maxRunningTasks, 7);
  });

  it('reads secrets from the environment and never prints them', () => {
    const input = {
      providers: {
        gem: {
          type: 'gemini',
          keys: [
            { id: 'a', secret: 'env:GEMINI_KEY_A' },
            { id: 'b', secret: 'env:MISSING_KEY' },
          ],
        },
      },
      pipelines: { p: { steps: [{ name: 'generate', provider: 'gem', batchSize: 1 }, { name: 'store' }] } },
      database: { url: 'postgres://darkroom:hunter2@db:5432/darkroom' },
    };
    const config = resolveConfig(input, { GEMINI_KEY_A: 'AIzaSECRET123' });
    assert.equal(config.providers.gem!.keys[0]!.secret, 'AIzaSECRET123');
    assert.equal(config.providers.gem!.keys[1]!.secret, undefined);
    assert.equal(config.providers.gem!.keys[1]!.secretMissing, true);
    const printed = JSON.stringify(redactConfig(config));
    assert.ok(!printed.includes('AIzaSECRET123'));
    assert.ok(!printed.includes('hunter2'));
  });
});
