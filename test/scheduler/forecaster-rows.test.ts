import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import { createForecaster, type Forecaster } from '../../src/scheduler/forecaster.ts';
import { describeEachDb } from '../helpers/db.ts';
import { postJson, useTestServer } from '../helpers/server.ts';

/**
 * The forecast's write work is bounded: with a queue bigger than the head and the tail's share,
 * a pass writes the head, the newcomers and at most `tailRows` more rows, and the tail comes
 * round. The server runs the API role only (nothing is admitted, no leader forecasts on its own);
 * the test runs the passes itself, with small head and tail settings and an injected clock.
 */

const HEAD = 5;
const TAIL = 4;

interface Row {
  task_id: string;
  position: number;
  basis: string;
  at: number;
}

describeEachDb('forecast rows written per pass', (kind) => {
  const t = useTestServer(
    kind,
    {
      // One task slot: every other task waits, so positions run 0, 1, 2, …
      limits: { maxRunningTasks: 1, perUserRunningTasks: 1 },
      providers: {
        main: {
          concurrency: 5,
          keys: [{ id: 'k1', rpm: 100_000, concurrency: 5 }],
          sim: { latencyMs: 4000, jitterMs: 0 },
        },
      },
    },
    ['api'],
  );
  let forecaster: Forecaster;
  const clock = 1_000_000;
  before(() => {
    forecaster = createForecaster(t.server.ctx, {
      budgetMs: Number.POSITIVE_INFINITY,
      now: () => clock,
      headRows: HEAD,
      tailRows: TAIL,
    });
  });
  after(async () => {
    await forecaster.stop();
  });

  async function rows(): Promise<Row[]> {
    const { rows } = await t.server.ctx.db.query<Row>(
      `SELECT task_id, position, basis, (extract(epoch FROM forecast_at) * 1000)::float8 AS at
         FROM task_forecasts ORDER BY task_id`,
    );
    return rows;
  }
  /** Rows written by the latest pass (its forecast_at is the newest). */
  function newest(all: Row[]): Row[] {
    const at = Math.max(...all.map((r) => r.at));
    return all.filter((r) => r.at === at);
  }
  async function submit(n: number, from: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await postJson(t.server.baseUrl, '/v1/tasks', {
        user_id: `u-${from + i}`,
        type: 'photography',
        plan: 'free',
      });
      assert.equal(r.status, 202);
      ids.push(r.body.id as string);
    }
    return ids;
  }

  const ids: string[] = [];
  let firstAt = 0;

  it('the first pass writes every task (none written yet), then a pass writes the head and the tail share', async () => {
    ids.push(...(await submit(30, 0)));
    const first = await forecaster.runNow();
    assert.equal(first.outcome, 'written');
    assert.equal(first.tasks, 30);
    assert.equal(first.rows, 30);
    const all = await rows();
    assert.equal(all.length, 30);
    assert.ok(all.every((r) => r.basis !== 'submit'));
    firstAt = Math.max(...all.map((r) => r.at));
    assert.equal(newest(all).length, 30);

    const second = await forecaster.runNow();
    const after2 = await rows();
    const written = newest(after2);
    const head = written.filter((r) => r.position < HEAD).length;
    // Tasks predicted to start at the same instant share a position: at least HEAD of them.
    assert.ok(head >= HEAD && head < 30, `${head} head rows`);
    assert.equal(second.rows, written.length);
    assert.equal(written.length, head + TAIL, `${written.length} rows written`);
    assert.ok(written.length < 30);
    // Head rows are always fresh.
    for (const r of after2)
      if (r.position < HEAD) assert.ok(written.includes(r), `head row ${r.task_id} stale`);
  });

  it('after enough passes every queued task has been rewritten, and the head every time', async () => {
    // 25 tail tasks, TAIL a pass: 7 passes come round with room to spare.
    for (let i = 0; i < 7; i++) {
      await forecaster.runNow();
      const all = await rows();
      const written = newest(all);
      const head = all.filter((r) => r.position < HEAD);
      assert.ok(written.length <= head.length + TAIL, `${written.length} rows written`);
      for (const r of head)
        assert.ok(written.includes(r), `head row ${JSON.stringify(r)} stale: ${JSON.stringify(all)}`);
    }
    const all = await rows();
    assert.equal(all.length, 30);
    const old = all.filter((r) => r.at <= firstAt);
    assert.deepEqual(old, [], 'rows not refreshed since the first pass');
  });

  it('newcomers are written at once on top of the bound; ended tasks lose their rows', async () => {
    const fresh = await submit(3, 100);
    const canceled = ids.slice(-2);
    for (const id of canceled) {
      const r = await postJson(t.server.baseUrl, `/v1/tasks/${id}/cancel`, {});
      assert.equal(r.status, 200);
    }
    const pass = await forecaster.runNow();
    assert.equal(pass.tasks, 31);
    const all = await rows();
    const written = newest(all);
    const head = all.filter((r) => r.position < HEAD).length;
    assert.equal(pass.rows, written.length);
    assert.ok(written.length <= head + TAIL + fresh.length, `${written.length} rows written`);
    for (const id of fresh) {
      const r = all.find((x) => x.task_id === id);
      assert.ok(r && written.includes(r) && r.basis !== 'submit', `newcomer ${id} written`);
    }
    for (const id of canceled)
      assert.equal(
        all.find((r) => r.task_id === id),
        undefined,
        `ended task ${id} keeps its row`,
      );
    assert.equal(all.length, 31);
  });

  it('an unchanged queue with nothing in flight writes nothing', async () => {
    const before = await rows();
    const pass = await forecaster.runNow(false);
    assert.equal(pass.outcome, 'unchanged');
    assert.equal(pass.rows, 0);
    assert.deepEqual(await rows(), before);
  });
});
