import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { resolveConfig } from '../../src/config/load.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** YAML code blocks of a markdown file, split where a top-level `# comment` starts a new example. */
function yamlExamples(file: string): string[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const blocks = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .flatMap((b) => b.split(/^(?=# )/m))
    .filter((b) => /^(providers|storage|limits|plans|pipelines):/m.test(b));
}

const ENV = new Proxy({} as NodeJS.ProcessEnv, {
  get: (_t, name) => (typeof name === 'string' ? `value-of-${name}` : undefined),
});

describe('configuration examples in the docs', () => {
  for (const file of ['README.md', 'docs/providers.md', 'docs/storage.md', 'docs/config.md']) {
    it(`every example in ${file} is a valid configuration`, () => {
      const examples = yamlExamples(file);
      assert.ok(examples.length > 0, `no YAML example found in ${file}`);
      for (const example of examples) {
        const parsed = YAML.parse(example) as Record<string, unknown>;
        assert.doesNotThrow(
          () => resolveConfig(parsed, ENV, file),
          `invalid example in ${file}:\n${example}`,
        );
      }
    });
  }
});
