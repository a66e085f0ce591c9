import assert from 'node:assert/strict';
import { before, it } from 'node:test';
import { v7 as uuidv7 } from 'uuid';
import type { Db, Queryable } from '../../src/store/db.ts';
import { itemOf, writeSubmits, type SubmitWrite } from '../../src/store/submit-write.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * A batch of submits is written set-based (migration 0023): one statement per table and one
 * subtransaction for the whole batch (darkroom_submit_set, for batches of 16 and more since 0024),
 * checked against the item-by-item function (0022's, darkroom_submit_each, for batches with a
 * refusal and small ones): the same random batches,
 * from the same state, give the same outcomes, counts, positions and rows.
 */

const WINDOW = '2026-01-01T00:00:00.000Z';

function write(
  userId: string,
  extra: { orderId?: string; credits?: number; grant?: number | null } = {},
): SubmitWrite {
  const id = uuidv7();
  return {
    task: {
      id,
      userId,
      orderId: extra.orderId ?? null,
      type: 'photography',
      plan: 'free',
      prompt: '',
      inputs: [],
      params: {},
      seed: 1,
      weight: 1,
      imagesTotal: 2,
      creditsCharged: extra.credits ?? 2,
      stage: 'beautify',
      deadlineSeconds: null,
    },
    jobs: [
      {
        id: uuidv7(),
        taskId: id,
        userId,
        stepIndex: 0,
        stepName: 'beautify',
        kind: 'transform',
        resource: 'main',
        firstIndex: 0,
        count: 1,
        maxAttempts: 3,
        input: { keys: [] },
      },
    ],
    webhook: undefined,
    estimate: { startAtMs: 1_700_000_000_000, finishAtMs: 1_700_000_060_000 },
    grant: extra.grant === null ? undefined : (extra.grant ?? 100),
    buckets: [`user:${userId}`, 'key:k'],
    windowStart: new Date(WINDOW),
    limits: { maxQueued: 1000, perUserQueued: 1000, userPerMinute: 1000, keyPerMinute: 1000 },
  };
}

/** mulberry32: a seeded generator, so a failing trial can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Scenario {
  balances: Record<string, number>;
  /** Queued tasks before the batch: [user, order id or null]. */
  queued: Array<[string, string | null]>;
  /** Rate rows before the batch: bucket → count in WINDOW. */
  windows: Record<string, number>;
  items: SubmitWrite[];
}

function scenario(seed: number): Scenario {
  const r = random(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const users = ['a', 'b', 'c', 'new1', 'new2'];
  // Half the trials have room for everything (the set-based write), half are tight.
  const tight = r() < 0.5;
  const limits = {
    maxQueued: tight ? 3 + Math.floor(r() * 8) : 1000,
    perUserQueued: tight ? 1 + Math.floor(r() * 4) : 1000,
    userPerMinute: tight ? 1 + Math.floor(r() * 5) : 1000,
    keyPerMinute: tight ? 2 + Math.floor(r() * 8) : 1000,
  };
  const balances: Record<string, number> = {
    a: tight ? Math.floor(r() * 8) : 100,
    b: tight ? Math.floor(r() * 8) : 100,
    c: 100,
  };
  const queued: Array<[string, string | null]> = [];
  for (let i = Math.floor(r() * 3); i > 0; i--)
    queued.push([pick(['a', 'b', 'c']), pick([null, 'o1', 'o2'])]);
  const windows: Record<string, number> = { 'key:k': Math.floor(r() * 3), 'user:a': Math.floor(r() * 2) };
  const items = Array.from({ length: 1 + Math.floor(r() * 12) }, () => {
    const user = pick(users);
    const w = write(user, {
      orderId: tight && r() < 0.3 ? pick(['o1', 'o2', 'o3']) : undefined,
      credits: pick([0, 1, 2, 3]),
      grant: user.startsWith('new') && r() < 0.3 ? null : pick([0, 2, 5]),
    });
    return { ...w, limits };
  });
  // Orders already active are unique per user.
  const seen = new Set<string>();
  return {
    balances,
    queued: queued.filter(([u, o]) => o === null || (!seen.has(`${u}/${o}`) && seen.add(`${u}/${o}`))),
    windows,
    items,
  };
}

class Rollback extends Error {}

/** Sets `s` up, runs `fn` over its batch, and returns what it answered and left; all rolled back. */
async function runIn(
  db: Db,
  s: Scenario,
  fn: string,
): Promise<{ out: unknown; state: unknown; xmins: number }> {
  let result!: { out: unknown; state: unknown; xmins: number };
  await db
    .transaction(async (tx: Queryable) => {
      await tx.query('TRUNCATE tasks, rate_limits, users, credit_ledger CASCADE');
      for (const [id, balance] of Object.entries(s.balances))
        await tx.query('INSERT INTO users (id, balance) VALUES ($1, $2)', [id, balance]);
      for (const [user, order] of s.queued)
        await tx.query(
          `INSERT INTO tasks (id, user_id, order_id, type, plan, seed, weight, state, stage, images_total, credits_charged)
           VALUES ($1, $2, $3, 'photography', 'free', 0, 1, 'queued', 'beautify', 2, 2)`,
          [uuidv7(), user, order],
        );
      await tx.query(`UPDATE queue_depth SET queued = $1 WHERE id = 1`, [s.queued.length]);
      for (const [bucket, count] of Object.entries(s.windows))
        await tx.query('INSERT INTO rate_limits (bucket, window_start, count) VALUES ($1, $2, $3)', [
          bucket,
          WINDOW,
          count,
        ]);
      const ids = s.items.map((w) => w.task.id);
      const { rows: out } = await tx.query(
        `SELECT o_item, o_outcome, o_detail, o_id, o_state, o_images_total, o_credits_charged, o_position
           FROM ${fn}($1::jsonb) ORDER BY o_item`,
        [JSON.stringify(s.items.map(itemOf))],
      );
      const q = async (sql: string) => (await tx.query(sql, [ids])).rows;
      const state = {
        tasks: await q(
          `SELECT id, user_id, order_id, state, credits_charged FROM tasks WHERE id = ANY($1) ORDER BY id`,
        ),
        jobs: await q(
          `SELECT id, task_id, user_id, state, count FROM jobs WHERE task_id = ANY($1) ORDER BY id`,
        ),
        events: await q(`SELECT task_id, user_id, type FROM events WHERE task_id = ANY($1) ORDER BY task_id`),
        users: await q(`SELECT id, balance FROM users WHERE $1::text[] IS NOT NULL ORDER BY id`),
        ledger: await q(
          `SELECT user_id, task_id, delta, reason FROM credit_ledger WHERE $1::text[] IS NOT NULL
            ORDER BY user_id, task_id NULLS FIRST, reason`,
        ),
        windows: await q(
          `SELECT bucket, count FROM rate_limits WHERE $1::text[] IS NOT NULL ORDER BY bucket`,
        ),
        depth: await q(`SELECT queued FROM queue_depth WHERE $1::text[] IS NOT NULL`),
        forecasts: await q(
          `SELECT task_id, position, basis FROM task_forecasts WHERE task_id = ANY($1) ORDER BY task_id`,
        ),
      };
      const { rows } = await tx.query<{ n: number }>(
        'SELECT count(DISTINCT xmin::text)::int AS n FROM tasks WHERE id = ANY($1)',
        [ids],
      );
      result = { out, state, xmins: rows[0]!.n };
      throw new Rollback();
    })
    .catch((e: unknown) => {
      if (!(e instanceof Rollback)) throw e;
    });
  return result;
}

describeEachDb('submits written set-based', (kind) => {
  const t = useTestDb(kind);
  let db: Db;
  before(() => {
    db = t.db;
  });

  it('a batch of 32 submits is written by one subtransaction: its tasks share one transaction id', async () => {
    await db.query('TRUNCATE tasks, rate_limits, users CASCADE');
    await db.query('UPDATE queue_depth SET queued = 0');
    const writes = Array.from({ length: 32 }, (_, i) => write(`u${i % 5}`));
    const results = await writeSubmits(db, writes);
    assert.deepEqual(
      results.map((r) => r.outcome === 'queued' && r.position),
      writes.map((_, i) => i),
    );
    const { rows } = await db.query<{ n: number }>(
      'SELECT count(DISTINCT xmin::text)::int AS n FROM tasks WHERE id = ANY($1)',
      [writes.map((w) => w.task.id)],
    );
    // Item by item (0022), each submit was its own subtransaction: 32 transaction ids.
    assert.equal(rows[0]!.n, 1);
  });

  it('a batch under 16 submits goes item by item (0024): one transaction id each', async () => {
    await db.query('TRUNCATE tasks, rate_limits, users CASCADE');
    await db.query('UPDATE queue_depth SET queued = 0');
    const writes = Array.from({ length: 15 }, (_, i) => write(`u${i % 5}`));
    const results = await writeSubmits(db, writes);
    assert.deepEqual(
      results.map((r) => r.outcome === 'queued' && r.position),
      writes.map((_, i) => i),
    );
    const { rows } = await db.query<{ n: number }>(
      'SELECT count(DISTINCT xmin::text)::int AS n FROM tasks WHERE id = ANY($1)',
      [writes.map((w) => w.task.id)],
    );
    assert.equal(rows[0]!.n, 15);
  });

  it('random batches, refusals among them, give what the item-by-item function gives', async () => {
    let setBased = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const s = scenario(seed);
      const fast = await runIn(db, s, 'darkroom_submit_set');
      const each = await runIn(db, s, 'darkroom_submit_each');
      assert.deepEqual(fast.out, each.out, `seed ${seed}: answers`);
      assert.deepEqual(fast.state, each.state, `seed ${seed}: rows`);
      if (fast.xmins === 1 && s.items.length > 1) setBased++;
    }
    // Both paths were exercised: batches written as one set, and batches with a refusal.
    assert.ok(setBased >= 5, `${setBased} batches written set-based`);
    assert.ok(setBased <= 35, `${setBased} batches written set-based`);
  });
});
