import assert from 'node:assert/strict';
import { it } from 'node:test';
import pg from 'pg';
import { aimdOnSuccess } from '../../src/policy/aimd.ts';
import { recordProviderSuccess } from '../../src/store/provider-state.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * Every successful call of a provider records an AIMD success. Taking the provider's state row
 * FOR UPDATE for each one queued all of a provider's outcome transactions behind each other
 * (pg_stat_statements: 10.6 ms mean wait per outcome at 16 calls in flight). At the cap a
 * success changes nothing and must take no lock; below it, it locks and counts.
 */
const SETTINGS = { cap: 4, increaseAfter: 3, decreaseFactor: 0.5 };
const success = (tx: Parameters<typeof recordProviderSuccess>[0]) =>
  recordProviderSuccess(tx, 'p', (s) => aimdOnSuccess(s, SETTINGS), SETTINGS.cap);

describeEachDb('provider state: AIMD successes', (kind) => {
  const t = useTestDb(kind);

  async function state(): Promise<{ effective: number; streak: number }> {
    const { rows } = await t.db.query<{ effective: number; streak: number }>(
      `SELECT effective_concurrency::float8 AS effective, success_streak AS streak
         FROM provider_state WHERE provider = 'p' AND key_id = ''`,
    );
    return rows[0]!;
  }

  /** Whether another session could lock the provider's row now (NOWAIT: no waiting, no clock). */
  async function lockableElsewhere(): Promise<boolean> {
    const c = new pg.Client({ connectionString: t.url });
    await c.connect();
    try {
      await c.query('BEGIN');
      await c.query(`SELECT 1 FROM provider_state WHERE provider = 'p' AND key_id = '' FOR UPDATE NOWAIT`);
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === '55P03') return false; // lock_not_available
      throw error;
    } finally {
      await c.query('ROLLBACK').catch(() => {});
      await c.end();
    }
  }

  /** Runs one success in a transaction held open while `during` looks at the row's lock. */
  async function successHeldOpen(during: () => Promise<boolean>): Promise<boolean> {
    let seen = false;
    await t.db.transaction(async (tx) => {
      await success(tx);
      seen = await during();
    });
    return seen;
  }

  it('creates the row at the cap, then a success at the cap changes nothing', async () => {
    await t.db.transaction((tx) => success(tx));
    assert.deepEqual(await state(), { effective: 4, streak: 0 });
    await t.db.transaction((tx) => success(tx));
    assert.deepEqual(await state(), { effective: 4, streak: 0 });
  });

  if (kind === 'postgres') {
    it('a success at the cap leaves the row unlocked for the other outcome transactions', async () => {
      assert.equal(await successHeldOpen(lockableElsewhere), true);
    });
  }

  it('below the cap, successes count and raise the concurrency after `increaseAfter` of them', async () => {
    await t.db.query(
      `UPDATE provider_state SET effective_concurrency = 2, success_streak = 0 WHERE provider = 'p' AND key_id = ''`,
    );
    await t.db.transaction((tx) => success(tx));
    await t.db.transaction((tx) => success(tx));
    assert.deepEqual(await state(), { effective: 2, streak: 2 });
    if (kind === 'postgres') {
      // The third one moves the state: it holds the row until its transaction ends.
      assert.equal(await successHeldOpen(lockableElsewhere), false);
    } else {
      await t.db.transaction((tx) => success(tx));
    }
    assert.deepEqual(await state(), { effective: 3, streak: 0 });
  });
});
