/**
 * Admin retry end to end (POST /v1/admin/tasks/:id/retry): a partial task runs only its
 * undelivered image again, counted as requests at the provider simulator over HTTP, and is
 * charged only for it; the ledger keeps one charge and at most one refund per attempt.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { finishIfDone } from '../../src/pipeline/transitions.ts';
import { refundTask } from '../../src/store/credits.ts';
import { describeEachDb } from '../helpers/db.ts';
import { INITIAL, PER_IMAGE, useRetryRig, type Json, type Progress } from './retry-server.ts';

describeEachDb('admin retry of a partial task', (kind) => {
  const r = useRetryRig(kind);

  it('re-runs only the failed image of a partial task and charges only for it', async () => {
    const before = r.requests();
    const { id, task } = await r.partialTask('u-partial');
    assert.equal(r.requests() - before, 4);
    assert.equal(await r.balance('u-partial'), INITIAL - 3 * PER_IMAGE);
    const kept = new Map((task.images as Json[]).map((i) => [i.index as number, i.url as string]));
    const missing = [0, 1, 2, 3].find((i) => !kept.has(i))!;

    const retried = await r.retry(id, { reason: 'provider refusal was a fluke' });
    assert.equal(retried.status, 202, JSON.stringify(retried.body));
    assert.equal(retried.body.attempt, 2);
    assert.ok(['queued', 'running', 'succeeded'].includes(retried.body.state as string));
    // Progress counts from what already succeeded.
    assert.equal((retried.body.progress as Progress).done >= 3, true);
    assert.equal((retried.body.progress as Progress).failed, 0);

    const done = await r.ended(id);
    assert.equal(done.state, 'succeeded', JSON.stringify(done));
    assert.deepEqual(done.progress, { done: 4, failed: 0, total: 4 });
    assert.equal(done.attempt, 2);
    assert.equal(r.requests() - before, 5, 'exactly one more provider request: the failed image');
    const images = done.images as Json[];
    assert.deepEqual(
      images.map((i) => i.index),
      [0, 1, 2, 3],
    );
    // The images delivered before are the same stored objects.
    for (const [index] of kept) {
      const path = (u: string) => new URL(u).pathname;
      assert.equal(path(images.find((i) => i.index === index)!.url as string), path(kept.get(index)!));
    }
    // Four images for the plan's price: initial − 4 × 3, exactly.
    assert.equal(await r.balance('u-partial'), INITIAL - 4 * PER_IMAGE);
    assert.equal(done.credits_charged, 4 * PER_IMAGE + PER_IMAGE);
    assert.equal(done.credits_refunded, PER_IMAGE);
    assert.deepEqual(await r.ledger(id), [
      `charge#1:${-4 * PER_IMAGE}`,
      `refund#1:${PER_IMAGE}`,
      `charge#2:${-PER_IMAGE}`,
    ]);
    const { rows: jobs } = await r.server.ctx.db.query<{ first_index: number; count: number }>(
      `SELECT first_index, count FROM jobs WHERE task_id = $1 AND kind = 'generate' AND created_at >=
         (SELECT created_at FROM events WHERE task_id = $1 AND type = 'retried')`,
      [id],
    );
    assert.deepEqual(jobs, [{ first_index: missing, count: 1 }]);
    const { rows: events } = await r.server.ctx.db.query<{ type: string; data: Json }>(
      'SELECT type, data FROM events WHERE task_id = $1 ORDER BY id',
      [id],
    );
    const retriedEvent = events.find((e) => e.type === 'retried')!;
    assert.equal(retriedEvent.data.attempt, 2);
    assert.equal(retriedEvent.data.images, 1);
    assert.equal(retriedEvent.data.credits_charged, PER_IMAGE);
    assert.match(retriedEvent.data.by as string, /provider refusal was a fluke/);
    const finishes = events.filter((e) => e.type === 'finished').map((e) => [e.data.state, e.data.attempt]);
    assert.deepEqual(finishes, [
      ['partial', 1],
      ['succeeded', 2],
    ]);
  });

  it('refunds a retry that fails again exactly once, per attempt', async () => {
    const before = r.requests();
    const { id } = await r.partialTask('u-again');
    await r.fault(['refusal']);
    assert.equal((await r.retry(id)).status, 202);
    const again = await r.ended(id);
    assert.equal(again.state, 'partial');
    assert.equal(again.attempt, 2);
    assert.deepEqual(again.progress, { done: 3, failed: 1, total: 4 });
    assert.equal(r.requests() - before, 5);
    assert.equal(await r.balance('u-again'), INITIAL - 3 * PER_IMAGE);
    // Ending it again changes nothing: the ledger takes one refund per task and attempt.
    await r.server.ctx.db.transaction(async (tx) => {
      assert.equal(await finishIfDone(tx, id), undefined);
      assert.equal(await refundTask(tx, 'u-again', id, PER_IMAGE, 2), 0);
    });
    assert.deepEqual(await r.ledger(id), [
      `charge#1:${-4 * PER_IMAGE}`,
      `refund#1:${PER_IMAGE}`,
      `charge#2:${-PER_IMAGE}`,
      `refund#2:${PER_IMAGE}`,
    ]);
    assert.equal(await r.balance('u-again'), INITIAL - 3 * PER_IMAGE);
    // A third attempt delivers it.
    assert.equal((await r.retry(id)).status, 202);
    const done = await r.ended(id);
    assert.equal(done.state, 'succeeded');
    assert.equal(done.attempt, 3);
    assert.equal(r.requests() - before, 6);
    assert.equal(await r.balance('u-again'), INITIAL - 4 * PER_IMAGE);
  });
});
