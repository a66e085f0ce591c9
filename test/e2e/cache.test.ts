import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

interface Image {
  index: number;
  cached: boolean;
  url: string;
}

describeEachDb('result cache', (kind) => {
  const t = useTestServer(kind, {
    pipelines: {
      photography: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 2, cache: true },
          { name: 'store', concurrency: 5 },
        ],
      },
    },
  });

  async function run(prompt: string, seed: number): Promise<{ id: string; images: Image[] }> {
    const r = await postJson(t.server.baseUrl, '/v1/tasks', {
      user_id: 'cacher',
      type: 'photography',
      plan: 'free',
      prompt,
      params: { seed },
    });
    assert.equal(r.status, 202);
    const id = r.body.id as string;
    const task = await waitFor('the task to end', async () => {
      const v = await getJson(t.server.baseUrl, `/v1/tasks/${id}`);
      return v.body.state === 'succeeded' ? v.body : undefined;
    });
    return { id, images: task.images as Image[] };
  }

  async function hashes(taskId: string): Promise<string[]> {
    const { rows } = await t.server.ctx.db.query<{ sha256: string }>(
      'SELECT sha256 FROM images WHERE task_id = $1 ORDER BY index',
      [taskId],
    );
    return rows.map((r) => r.sha256);
  }

  it('reuses the stored images of an identical call without a provider request, and marks them cached', async () => {
    const first = await run('a red fox', 42);
    assert.deepEqual(
      first.images.map((i) => i.cached),
      [false, false],
    );
    const second = await run('a red fox', 42);
    assert.deepEqual(
      second.images.map((i) => i.cached),
      [true, true],
    );
    assert.deepEqual(await hashes(second.id), await hashes(first.id));
    const requests = await t.server.ctx.db.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM key_requests k JOIN jobs j ON j.id = k.job_id WHERE j.task_id = $1',
      [second.id],
    );
    assert.equal(requests.rows[0]!.n, 0, 'a cache hit spends no request on the key');
    const other = await run('a red fox', 43);
    assert.deepEqual(
      other.images.map((i) => i.cached),
      [false, false],
      'another seed is another call',
    );
    const otherPrompt = await run('a blue fox', 42);
    assert.deepEqual(
      otherPrompt.images.map((i) => i.cached),
      [false, false],
      'another prompt is another call',
    );
  });
});
