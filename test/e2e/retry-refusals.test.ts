/**
 * Admin retry end to end, the rest: a task that delivered nothing runs whole again; a task that
 * is not failed or partial, an unknown id, a bad body and a short balance are refused, and a
 * refused retry changes nothing.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';
import { INITIAL, PER_IMAGE, useRetryRig, type Json } from './retry-server.ts';

describeEachDb('admin retry of a failed task, and its refusals', (kind) => {
  const r = useRetryRig(kind);

  it('retries a task that delivered nothing as a whole, charging the full price again', async () => {
    await r.fault(['refusal', 'refusal', 'refusal', 'refusal']);
    const id = await r.submit('u-failed');
    const failed = await r.ended(id);
    assert.equal(failed.state, 'failed');
    assert.equal(await r.balance('u-failed'), INITIAL);
    assert.equal((await r.retry(id)).status, 202);
    const done = await r.ended(id);
    assert.equal(done.state, 'succeeded');
    assert.equal(await r.balance('u-failed'), INITIAL - 4 * PER_IMAGE);
  });

  it('refuses tasks that are not failed or partial, unknown ids and a short balance', async () => {
    const ok = await r.submit('u-refused');
    assert.equal((await r.ended(ok)).state, 'succeeded');
    const notRetryable = await r.retry(ok);
    assert.equal(notRetryable.status, 409);
    assert.equal((notRetryable.body.error as Json).code, 'task_not_retryable');

    await r.fault(['hang']); // held open at the simulator: the task stays running
    const running = await r.submit('u-refused');
    await waitFor('the held task to run', async () => {
      const read = await getJson(r.base, `/v1/tasks/${running}`);
      return read.body.state === 'running';
    });
    assert.equal((await r.retry(running)).status, 409);
    assert.equal((await postJson(r.base, `/v1/tasks/${running}/cancel`, {})).status, 200);
    assert.equal((await r.ended(running)).state, 'canceled');
    assert.equal((await r.retry(running)).status, 409);

    const unknown = await r.retry('0190d0f0-0000-7000-8000-000000000000');
    assert.equal(unknown.status, 404);
    assert.equal((unknown.body.error as Json).code, 'task_not_found');
    assert.equal((await r.retry(ok, { nope: 1 })).status, 400);

    // Short of the one image's price: 402, and nothing about the task changes.
    const { id } = await r.partialTask('u-short');
    const have = await r.balance('u-short');
    const adjust = await postJson(r.base, '/v1/admin/users/u-short/credits', {
      delta: -(have - (PER_IMAGE - 1)),
      reason: 'test: leave less than one image',
    });
    assert.equal(adjust.status, 200, JSON.stringify(adjust.body));
    const ledgerBefore = await r.ledger(id);
    const short = await r.retry(id);
    assert.equal(short.status, 402);
    assert.equal((short.body.error as Json).code, 'insufficient_credits');
    const after = (await getJson(r.base, `/v1/tasks/${id}`)).body;
    assert.equal(after.state, 'partial');
    assert.equal(after.attempt, 1);
    assert.deepEqual(await r.ledger(id), ledgerBefore);
    assert.equal(await r.balance('u-short'), PER_IMAGE - 1);
  });
});
