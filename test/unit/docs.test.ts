/**
 * Keeps docs/config.md, docs/api.md and docs/errors.md honest: every configuration field (with
 * its default), environment variable, error code (with its status) and route the code has must
 * be documented, and the docs may not describe fields, codes or routes the code does not have.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import YAML from 'yaml';
import { buildApp } from '../../src/api/app.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { configSchema } from '../../src/config/schema.ts';
import type { Context } from '../../src/context.ts';
import { ErrorCodes } from '../../src/errors.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (file: string) => readFileSync(path.join(ROOT, file), 'utf8');

/** Cells of a markdown table row (`\|` inside a cell is not a separator), or undefined. */
function cells(line: string): string[] | undefined {
  const t = line.trim();
  if (!t.startsWith('|')) return undefined;
  return t
    .slice(1, t.endsWith('|') ? -1 : undefined)
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());
}

/** Table rows keyed by their first cell. */
function rowsOf(markdown: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of markdown.split('\n')) {
    const c = cells(line);
    if (c && c.length > 1 && !/^-+$/.test(c[0]!)) rows.set(c[0]!, c);
  }
  return rows;
}

// ---- the zod schema, walked ------------------------------------------------------------

interface Field {
  path: string;
  leaf: boolean;
  /** The zod default of a leaf, when it has one. */
  default?: unknown;
}

// zod v4 internals: every schema has `_zod.def` with a `type` and the type's parts.
type Def = {
  type: string;
  innerType?: Schema;
  defaultValue?: unknown;
  shape?: Record<string, Schema>;
  valueType?: Schema;
  element?: Schema;
  options?: Schema[];
};
type Schema = { _zod: { def: Def } };

function unwrap(schema: Schema): Schema {
  const def = schema._zod.def;
  return ['default', 'prefault', 'optional', 'nullable'].includes(def.type) ? unwrap(def.innerType!) : schema;
}

function walk(schema: Schema, at: string, out: Map<string, Field>, inherited?: { value: unknown }): void {
  const def = schema._zod.def;
  switch (def.type) {
    case 'default':
      return walk(def.innerType!, at, out, { value: def.defaultValue });
    case 'prefault':
    case 'optional':
    case 'nullable':
      return walk(def.innerType!, at, out, inherited);
    case 'object': {
      // `plans.<name>` and `keys[]` are not fields of their own; `plans` and `keys` are.
      if (at && !/[>\]]$/.test(at)) out.set(at, { path: at, leaf: false });
      for (const [key, child] of Object.entries(
        (schema as unknown as { shape: Record<string, Schema> }).shape,
      )) {
        walk(child, at ? `${at}.${key}` : key, out);
      }
      return;
    }
    case 'record':
      if (unwrap(def.valueType!)._zod.def.type === 'object') {
        out.set(at, { path: at, leaf: false });
        return walk(def.valueType!, `${at}.<name>`, out);
      }
      break; // a free-form map (params) is a leaf
    case 'array': {
      const element = def.element!._zod.def.type;
      if (element === 'object') {
        out.set(at, { path: at, leaf: false });
        return walk(def.element!, `${at}[]`, out);
      }
      break; // a list of scalars is a leaf
    }
    case 'union': {
      // storage: one path per field over all options (local and s3).
      out.set(at, { path: at, leaf: false });
      for (const option of def.options!) {
        for (const [key, child] of Object.entries(
          (option as unknown as { shape: Record<string, Schema> }).shape,
        )) {
          const sub = new Map<string, Field>();
          walk(child, `${at}.${key}`, sub);
          for (const [p, f] of sub) if (!out.has(p)) out.set(p, f);
        }
      }
      return;
    }
  }
  out.set(at, { path: at, leaf: true, ...(inherited ? { default: inherited.value } : {}) });
}

function configFields(): Map<string, Field> {
  const out = new Map<string, Field>();
  walk(configSchema as unknown as Schema, '', out);
  return out;
}

/** How a default is written in the default column of docs/config.md. */
function formatDefault(value: unknown): string | undefined {
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.length === 0) return '[]';
  if (value && typeof value === 'object' && Object.keys(value).length === 0) return '{}';
  return undefined; // objects with content (e.g. the sim block) are documented field by field
}

// ---- the routes, from the app itself ---------------------------------------------------

/** Every "METHOD /path" the app serves (HEAD twins excluded), read from Fastify's route tree. */
async function registeredRoutes(): Promise<string[]> {
  const config = resolveConfig({}, {}, 'docs test');
  const ctx = {
    config,
    log: pino({ level: 'silent' }),
    db: {} as Context['db'],
    storage: {} as Context['storage'],
    providers: new Map(),
    random: Math.random,
  } satisfies Context;
  const app = await buildApp(ctx, { signingSecret: 'docs-test' });
  try {
    await app.ready();
    // The radix tree: each node's label continues its parent's path.
    const prefixes: string[] = [];
    const routes: string[] = [];
    for (const line of app.printRoutes().split('\n')) {
      const at = line.search(/[├└]── /);
      if (at < 0) continue;
      const depth = at / 4;
      const m = /^(.*?)(?: \(([^)]*)\))?$/.exec(line.slice(at + 4))!;
      const full = (depth > 0 ? prefixes[depth - 1]! : '') + m[1]!;
      prefixes[depth] = full;
      for (const method of (m[2] ?? '').split(',').map((s) => s.trim())) {
        if (!method || method === 'HEAD' || method === '-') continue;
        assert.ok(
          app.hasRoute({ method: method as 'GET', url: full }),
          `route tree parsed wrongly: ${method} ${full}`,
        );
        routes.push(`${method} ${full}`);
      }
    }
    return routes;
  } finally {
    await app.close();
  }
}

// ---- the tests ---------------------------------------------------------------------------

describe('docs/config.md', () => {
  const doc = read('docs/config.md');
  const rows = rowsOf(doc);
  const fields = configFields();

  it('walks the whole schema', () => {
    // A guard on the walker itself: a few fields at every depth.
    for (const p of [
      'home',
      'server.port',
      'plans.<name>.images',
      'providers.<name>.keys[].rpm',
      'providers.<name>.sim.latencyMs',
      'pipelines.<name>.steps[].kind',
      'storage.bucket',
      'inputs.allowHosts',
    ]) {
      assert.ok(fields.has(p), `schema walk misses ${p}`);
    }
    assert.ok(fields.size > 80, `only ${fields.size} fields found`);
  });

  it('documents every field of the schema', () => {
    const missing: string[] = [];
    for (const f of fields.values()) {
      const code = `\`${f.path}\``;
      if (f.leaf ? !rows.has(code) : !doc.includes(code)) missing.push(f.path);
    }
    assert.deepEqual(
      missing,
      [],
      `fields missing from docs/config.md (leaf fields need a table row): ${missing.join(', ')}`,
    );
  });

  it('gives every field its schema default', () => {
    const wrong: string[] = [];
    for (const f of fields.values()) {
      if (!f.leaf || !('default' in f)) continue;
      const expected = formatDefault(f.default);
      if (expected === undefined) continue;
      const row = rows.get(`\`${f.path}\``);
      if (!row || !row[2]!.includes(`\`${expected}\``))
        wrong.push(`${f.path}: expected \`${expected}\`, found ${row?.[2]}`);
    }
    assert.deepEqual(
      wrong,
      [],
      `defaults in docs/config.md differ from src/config/schema.ts:\n${wrong.join('\n')}`,
    );
  });

  it('documents no field the schema does not have', () => {
    const stale = [...rows.keys()]
      .filter((k) => /^`[a-z][A-Za-z]*(\.[A-Za-z<>[\]]+)+`$/.test(k))
      .map((k) => k.slice(1, -1))
      .filter((p) => !fields.has(p));
    assert.deepEqual(stale, [], `docs/config.md has rows for unknown fields: ${stale.join(', ')}`);
  });

  it('shows the built-in default configuration exactly', () => {
    const section = doc.slice(doc.indexOf('## Built-in default configuration'));
    const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
    assert.ok(yaml, 'no yaml block under "## Built-in default configuration"');
    const { source: _a, ...fromDoc } = resolveConfig(YAML.parse(yaml) as Record<string, unknown>, {}, 'doc');
    const { source: _b, ...builtIn } = resolveConfig({}, {}, 'built-in');
    assert.deepEqual(fromDoc, builtIn);
  });

  it('names every environment variable the code reads', () => {
    const sources = read('src/config/load.ts') + read('src/server.ts') + read('src/config/secret-file.ts');
    const names = new Set([...sources.matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g)].map((m) => m[1]!));
    for (const n of ['DARKROOM_CONFIG', 'DARKROOM_SIGNING_SECRET', 'DATABASE_URL', 'PORT'])
      assert.ok(names.has(n), `did not find ${n} in the sources`);
    const missing = [...names].filter((n) => !rows.has(`\`${n}\``));
    assert.deepEqual(missing, [], `environment variables missing from docs/config.md: ${missing.join(', ')}`);
  });

  it('refers to the example configuration', () => {
    assert.match(doc, /\]\(\.\.\/examples\/darkroom\.yaml\)/);
  });
});

describe('docs/errors.md', () => {
  const doc = read('docs/errors.md');
  const rows = rowsOf(doc);

  it('lists every error code with its HTTP status', () => {
    const wrong: string[] = [];
    for (const [code, status] of Object.entries(ErrorCodes)) {
      const row = rows.get(`\`${code}\``);
      if (!row) wrong.push(`${code}: missing`);
      else if (row[1] !== String(status)) wrong.push(`${code}: documented ${row[1]}, code says ${status}`);
      else if (row.length < 4 || !row[2] || !row[3])
        wrong.push(`${code}: needs a description and a way to solve it`);
    }
    assert.deepEqual(wrong, [], wrong.join('\n'));
  });

  it('lists no code that does not exist', () => {
    const stale = [...rows.keys()].filter((k) => /^`[a-z_]+`$/.test(k) && !(k.slice(1, -1) in ErrorCodes));
    assert.deepEqual(stale, []);
  });

  it('lists every Fastify error the error handler maps, with its status', () => {
    const handler = read('src/api/error-handler.ts');
    const mapped = [...handler.matchAll(/(FST_[A-Z_]+): '([a-z_]+)'/g)];
    assert.ok(mapped.length >= 8, 'did not find the Fastify mappings in src/api/error-handler.ts');
    const wrong: string[] = [];
    for (const [, fst, code] of mapped) {
      const status = String(ErrorCodes[code as keyof typeof ErrorCodes]);
      const row = rows.get(`\`${fst}\``);
      if (!row) wrong.push(`${fst}: missing`);
      else if (status && (row[1] !== status || row[2] !== `\`${code}\``))
        wrong.push(`${fst}: documented ${row[1]} ${row[2]}, code says ${status} ${code}`);
    }
    assert.deepEqual(wrong, [], wrong.join('\n'));
  });

  it('states the body shape and that 5xx messages are hidden', () => {
    assert.match(doc, /\{ "error": \{ "code": .*"message": .*\} \}/);
    assert.match(doc, /5xx messages are hidden/);
  });
});

describe('docs/api.md', () => {
  const doc = read('docs/api.md');

  it('documents every route the app registers, and only those', async () => {
    const routes = await registeredRoutes();
    assert.ok(
      routes.includes('POST /v1/tasks') && routes.includes('GET /v1/files/*'),
      `route parsing failed: ${routes.join(', ')}`,
    );
    const missing = routes.filter((r) => !doc.includes(`## \`${r}\``));
    assert.deepEqual(
      missing,
      [],
      `routes without a "## \`METHOD /path\`" section in docs/api.md: ${missing.join(', ')}`,
    );
    const documented = [...doc.matchAll(/^## `([A-Z]+ \/[^`]*)`/gm)].map((m) => m[1]!);
    const stale = documented.filter((r) => !routes.includes(r));
    assert.deepEqual(stale, [], `docs/api.md documents routes the app does not have: ${stale.join(', ')}`);
  });
});
