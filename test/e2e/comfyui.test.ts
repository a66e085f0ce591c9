import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import YAML from 'yaml';
import { resolveConfig } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfigInput } from '../helpers/config.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { startProxy } from '../providers/comfyui-fixtures.ts';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const WORKFLOW = path.join(ROOT, 'examples', 'comfyui', 'txt2img.json');

/** The ComfyUI configuration docs/providers.md gives, as a user would copy it. */
function documentedComfyConfig(): { providers: Record<string, Record<string, unknown>>; pipelines: object } {
  const doc = readFileSync(path.join(ROOT, 'docs', 'providers.md'), 'utf8');
  const section = doc.slice(doc.indexOf('**ComfyUI** (local or behind a proxy'));
  const yaml = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(yaml, 'docs/providers.md has a ComfyUI configuration');
  return YAML.parse(yaml) as { providers: Record<string, Record<string, unknown>>; pipelines: object };
}

/**
 * ComfyUI through the real server, worker, adapter and simulator: a canceled task's running prompt is
 * interrupted and its queued one removed, a worker shutdown leaves prompts alone, and the configuration
 * docs/providers.md gives works, even behind a proxy that refuses websockets.
 */
describe('tasks on ComfyUI', () => {
  let fake: FakeProviderHandle;
  let server: RunningServer | undefined;
  let database: Awaited<ReturnType<typeof createPostgresDatabase>> | undefined;
  const comfy = () => fake.stats().providers.comfy?.comfyui;

  const start = async () => {
    const input = testConfigInput({
      providers: {
        comfy: {
          type: 'comfyui',
          baseUrl: `${fake.url}/p/comfy`,
          workflow: WORKFLOW,
          keys: [{ id: 'gpu', rpm: 1000, concurrency: 2 }],
        },
      },
      worker: { shutdownGraceMs: 50 },
      ...(database ? { database: { url: database.url } } : {}),
    });
    delete (input.providers as Record<string, unknown>).main;
    input.pipelines = {
      comfy: {
        steps: [
          { name: 'generate', provider: 'comfy', batchSize: 1 },
          { name: 'store', concurrency: 2 },
        ],
      },
    };
    return startServer(resolveConfig(input, {}, 'test'), { log: pino({ level: 'silent' }) });
  };

  before(async () => {
    // PostgreSQL when the suite has one: it starts faster than PGlite on a busy machine.
    database = PG_URL ? await createPostgresDatabase() : undefined;
    fake = await startFakeProvider({
      providers: [
        {
          name: 'fast',
          keys: [{ id: 'gpu', rpm: 1000, concurrency: 1 }],
          latencyMs: 50,
          jitterMs: 0,
          errorRate: 0,
        },
        {
          name: 'comfy',
          // One GPU slot and a minute per prompt: of a task's two prompts one runs, one waits.
          keys: [{ id: 'gpu', rpm: 1000, concurrency: 1 }],
          latencyMs: 60_000,
          jitterMs: 0,
          errorRate: 0,
        },
      ],
    });
  });
  after(async () => {
    await server?.stop();
    await fake?.close();
    await database?.drop();
  });

  it('interrupts the running prompt, removes the queued one and ends the task canceled', async () => {
    server = await start();
    const base = server.url!;
    const submitted = await postJson(base, '/v1/tasks', {
      user_id: 'u1',
      type: 'comfy',
      plan: 'free',
      prompt: 'x',
    });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    const id = submitted.body.id as string;
    await waitFor(
      'one prompt running and one queued in ComfyUI',
      () => comfy()?.running === 1 && comfy()?.pending === 1,
    );

    assert.equal((await postJson(base, `/v1/tasks/${id}/cancel`, {})).status, 200);
    const task = await waitFor('the task to end', async () => {
      const r = await getJson(base, `/v1/tasks/${id}`);
      return ['queued', 'running'].includes(r.body.state as string) ? undefined : r.body;
    });
    assert.equal(task.state, 'canceled', JSON.stringify(task));
    await waitFor('the GPU to be free', () => comfy()?.running === 0 && comfy()?.pending === 0);
    // The queued prompt is deleted, or interrupted when interrupting the first let it start meanwhile.
    const seen = comfy()!;
    for (const interrupt of seen.interrupts)
      assert.deepEqual(interrupt.interrupted, [interrupt.prompt_id], 'each interrupt names its own prompt');
    const stopped = [...seen.interrupts.map((i) => i.prompt_id), ...seen.deleted].sort();
    const refs = await server.ctx.db.query<{ remote_ref: string }>(
      'SELECT remote_ref FROM jobs WHERE task_id = $1 AND remote_ref IS NOT NULL ORDER BY remote_ref',
      [id],
    );
    assert.equal(refs.rows.length, 2);
    assert.deepEqual(
      stopped,
      refs.rows.map((r) => r.remote_ref).sort(),
      'both prompts of this task, no other',
    );
    assert.ok(seen.interrupts.length >= 1, 'the running prompt was interrupted');
  });

  it('leaves the prompts running when the worker shuts down', async () => {
    fake.restart();
    const base = server!.url!;
    const submitted = await postJson(base, '/v1/tasks', {
      user_id: 'u2',
      type: 'comfy',
      plan: 'free',
      prompt: 'y',
    });
    assert.equal(submitted.status, 202);
    await waitFor(
      'one prompt running and one queued in ComfyUI',
      () => comfy()?.running === 1 && comfy()?.pending === 1,
    );
    await server!.stop();
    server = undefined;
    assert.deepEqual(comfy(), { interrupts: [], deleted: [], views: 0, running: 1, pending: 1 });
  });
  it('runs a task with the configuration docs/providers.md gives, behind a proxy that refuses websockets', async () => {
    const proxy = await startProxy(fake.url, 'forbid');
    const documented = documentedComfyConfig();
    const comfyProvider = documented.providers.comfy!;
    comfyProvider.baseUrl = `${proxy.url}/p/fast`; // the only change: where the server is
    comfyProvider.workflow = path.join(ROOT, String(comfyProvider.workflow));
    const input = testConfigInput({ ...(database ? { database: { url: database.url } } : {}) });
    input.providers = documented.providers;
    input.pipelines = documented.pipelines;
    const docServer = await startServer(resolveConfig(input, {}, 'test'), { log: pino({ level: 'silent' }) });
    try {
      const base = docServer.url!;
      const r = await postJson(base, '/v1/tasks', {
        user_id: 'u3',
        type: 'kiosk',
        plan: 'free',
        prompt: 'z',
      });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      const task = await waitFor('the task to end', async () => {
        const t = await getJson(base, `/v1/tasks/${r.body.id as string}`);
        return ['queued', 'running'].includes(t.body.state as string) ? undefined : t.body;
      });
      assert.equal(task.state, 'succeeded', JSON.stringify(task));
      assert.equal((task.images as unknown[]).length, 2);
      assert.ok(proxy.upgrades() > 0, 'the websocket was tried, refused, and polling took over');
    } finally {
      await docServer.stop();
      await proxy.close();
    }
  });
});
