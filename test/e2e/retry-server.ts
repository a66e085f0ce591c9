import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import pino from 'pino';
import { resolveConfig } from '../../src/config/load.ts';
import { startFakeProvider, type FakeProviderHandle } from '../../src/providers/fake-server/index.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfigInput } from '../helpers/config.ts';
import { createPostgresDatabase, type DbKind } from '../helpers/db.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * The setup of the admin retry tests (retry*.test.ts): darkroom whose one provider is the
 * simulator over HTTP (requests counted there, faults scripted there), a plan of 4 images for
 * 4 × PER_IMAGE credits, one image per request so that a refusal fails exactly one image.
 */

export const PER_IMAGE = 3;
export const INITIAL = 1000;
const ENDS = { timeoutMs: 200_000, intervalMs: 100 }; // a loaded machine: wait long, never bound time

export type Json = Record<string, unknown>;
export type Progress = { done: number; failed: number; total: number };

export interface RetryRig {
  server: RunningServer;
  base: string;
  /** Provider requests the simulator has received so far. */
  requests(): number;
  fault(faults: string[]): Promise<void>;
  submit(userId: string): Promise<string>;
  ended(id: string): Promise<Json>;
  balance(userId: string): Promise<number>;
  /** The task's ledger rows as `reason#attempt:delta`, oldest first. */
  ledger(taskId: string): Promise<string[]>;
  retry(id: string, body?: unknown): ReturnType<typeof postJson>;
  /** A task of 4 images whose first provider request the simulator refuses: 3 delivered. */
  partialTask(userId: string): Promise<{ id: string; task: Json }>;
}

/** Call at describe level; the rig's fields are usable once `before` has run. */
export function useRetryRig(kind: DbKind): RetryRig {
  let fake: FakeProviderHandle;
  let dropDb: (() => Promise<void>) | undefined;
  const rig = {} as RetryRig;
  before(async () => {
    fake = await startFakeProvider({
      providers: [
        {
          name: 'main',
          keys: [{ id: 'k1', rpm: 10_000, concurrency: 8 }],
          latencyMs: 5,
          jitterMs: 2,
          errorRate: 0,
        },
      ],
    });
    const created = kind === 'postgres' ? await createPostgresDatabase() : undefined;
    dropDb = created?.drop;
    const input = testConfigInput({
      plans: { quad: { images: 4, credits: 4 * PER_IMAGE, weight: 1 } },
      providers: {
        main: {
          type: 'sim',
          baseUrl: fake.url,
          concurrency: 8,
          keys: [{ id: 'k1', rpm: 10_000, concurrency: 8 }],
          params: { size: '64x64' },
        },
      },
      ...(created ? { database: { url: created.url } } : {}),
    });
    input.pipelines = {
      photography: {
        steps: [
          { name: 'generate', provider: 'main', batchSize: 1 },
          { name: 'store', concurrency: 4 },
        ],
      },
    };
    rig.server = await startServer(resolveConfig(input, {}, 'test'), { log: pino({ level: 'silent' }) });
    rig.base = rig.server.url!;
  });
  after(async () => {
    await rig.server?.stop();
    await fake?.close();
    await dropDb?.();
  });

  rig.requests = () => fake.stats().providers.main!.keys.k1!.requests;
  rig.fault = async (faults) => {
    const r = await fetch(`${fake.url}/_sim/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ provider: 'main', faults }),
    });
    assert.equal(r.status, 200);
  };
  rig.submit = async (userId) => {
    const r = await postJson(rig.base, '/v1/tasks', {
      user_id: userId,
      type: 'photography',
      plan: 'quad',
      prompt: 'a pier at dusk',
    });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.id as string;
  };
  rig.ended = (id) =>
    waitFor(
      `task ${id} to end`,
      async () => {
        const r = await getJson(rig.base, `/v1/tasks/${id}`);
        return ['queued', 'running'].includes(r.body.state as string) ? undefined : r.body;
      },
      ENDS,
    );
  rig.balance = async (userId) =>
    (await getJson(rig.base, `/v1/users/${userId}/credits`)).body.balance as number;
  rig.ledger = async (taskId) => {
    const { rows } = await rig.server.ctx.db.query<{ reason: string; attempt: number; delta: number }>(
      'SELECT reason, attempt, delta FROM credit_ledger WHERE task_id = $1 ORDER BY id',
      [taskId],
    );
    return rows.map((r) => `${r.reason}#${r.attempt}:${r.delta}`);
  };
  rig.retry = (id, body = {}) => postJson(rig.base, `/v1/admin/tasks/${id}/retry`, body);
  rig.partialTask = async (userId) => {
    await rig.fault(['refusal']);
    const id = await rig.submit(userId);
    const task = await rig.ended(id);
    assert.equal(task.state, 'partial', JSON.stringify(task));
    assert.deepEqual(task.progress, { done: 3, failed: 1, total: 4 });
    return { id, task };
  };
  return rig;
}
