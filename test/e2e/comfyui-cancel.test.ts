import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { resolveConfig } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfigInput } from '../helpers/config.ts';
import { createPostgresDatabase, PG_URL } from '../helpers/db.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

const WORKFLOW = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'examples',
  'comfyui',
  'txt2img.json',
);

/**
 * Cancel reaches the GPU: a canceled task's running ComfyUI prompt is interrupted and its queued one
 * removed, through the real worker, adapter and simulator; a worker shutdown leaves prompts alone.
 */
describe('canceling a task that runs on ComfyUI', () => {
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
    assert.deepEqual(comfy(), { interrupts: [], deleted: [], running: 1, pending: 1 });
  });
});
