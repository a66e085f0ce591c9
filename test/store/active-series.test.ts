import assert from 'node:assert/strict';
import { it } from 'node:test';
import { minuteSeries } from '../../src/store/latency.ts';
import { compactCounters } from '../../src/store/counters.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * Queued and running by plan at each minute of the last hour, walked back from the counters.
 * Checked against a brute-force count done here (for each minute, the tasks whose
 * [created, left the queue) or [started, finished) interval holds it) and hand-derived figures.
 */

const AT = new Date('2026-03-01T12:30:20Z');
const FROM = new Date('2026-03-01T11:31:00Z'); // the minute of AT, less 59 minutes

interface Injected {
  plan: string;
  state: 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';
  created: string;
  started?: string;
  finished?: string;
}

const at = (hms: string) => new Date(`2026-03-01T${hms}Z`);

/** Independent of the code under test: interval membership per task, per minute. */
function bruteForce(
  tasks: Injected[],
  t: Date,
): { queued: Record<string, number>; running: Record<string, number> } {
  const queued: Record<string, number> = {};
  const running: Record<string, number> = {};
  const ms = t.getTime();
  for (const k of tasks) {
    const created = at(k.created).getTime();
    const started = k.started ? at(k.started).getTime() : undefined;
    const finished = k.finished ? at(k.finished).getTime() : undefined;
    const left = started ?? finished ?? Infinity;
    queued[k.plan] ??= 0;
    running[k.plan] ??= 0;
    if (created <= ms && ms < left) queued[k.plan]! += 1;
    if (started !== undefined && started <= ms && ms < (finished ?? Infinity)) running[k.plan]! += 1;
  }
  return { queued, running };
}

const TASKS: Injected[] = [
  // Backlog from before the window, still queued: counted in every minute.
  { plan: 'free', state: 'queued', created: '10:00:00' },
  { plan: 'free', state: 'queued', created: '11:00:00' },
  // Queued before the window, started in it, still running.
  { plan: 'free', state: 'running', created: '11:20:00', started: '12:05:30' },
  // Running since before the window, finished in it.
  { plan: 'pro', state: 'succeeded', created: '11:00:00', started: '11:10:00', finished: '11:45:10' },
  // Created, started and finished inside the window.
  { plan: 'pro', state: 'succeeded', created: '11:50:00', started: '11:52:00', finished: '12:01:00' },
  { plan: 'pro', state: 'failed', created: '12:10:59', started: '12:11:00', finished: '12:20:00' },
  // Canceled while queued: leaves the queue at finished_at, never runs.
  { plan: 'free', state: 'canceled', created: '11:40:00', finished: '12:15:00' },
  { plan: 'pro', state: 'canceled', created: '11:00:00', finished: '11:33:00' },
  // Created in the window, still queued; one exactly on a minute's start (counted at it).
  { plan: 'pro', state: 'queued', created: '12:25:00' },
  { plan: 'enterprise', state: 'queued', created: '12:29:59' },
  // Started exactly at a minute's start: running, no longer queued, at that minute.
  { plan: 'enterprise', state: 'running', created: '12:00:00', started: '12:20:00' },
  // After the window's end (the counters are the present's): must not show in the window.
  { plan: 'free', state: 'queued', created: '12:30:40' },
  { plan: 'pro', state: 'succeeded', created: '12:29:00', started: '12:30:30', finished: '12:30:50' },
  // Entirely before the window: nowhere.
  { plan: 'basic', state: 'succeeded', created: '10:00:00', started: '10:01:00', finished: '10:02:00' },
];

describeEachDb('queued and running by plan over the last hour', (kind) => {
  const t = useTestDb(kind);

  it('matches a brute-force count of every minute, folded counters or not', async () => {
    let n = 0;
    for (const k of TASKS)
      await t.db.query(
        `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, images_total, credits_charged,
                            created_at, started_at, finished_at)
         VALUES ($1, 'u', 'photography', $2, 1, 1, $3, 1, 1, $4, $5, $6)`,
        [
          `act-${++n}`,
          k.plan,
          k.state,
          at(k.created),
          k.started ? at(k.started) : null,
          k.finished ? at(k.finished) : null,
        ],
      );

    for (const folded of [false, true]) {
      if (folded) assert.ok((await compactCounters(t.db)) > 0);
      const s = await minuteSeries(t.db, AT);
      assert.equal(s.active.length, 60);
      for (const [i, p] of s.active.entries()) {
        const minute = new Date(FROM.getTime() + i * 60_000);
        assert.equal(p.at.toISOString(), minute.toISOString());
        const want = bruteForce(TASKS, minute);
        // 'basic' had nothing queued or running in the window: left out.
        delete want.queued.basic;
        delete want.running.basic;
        assert.deepEqual(p.queued, want.queued, `queued at ${minute.toISOString()}`);
        assert.deepEqual(p.running, want.running, `running at ${minute.toISOString()}`);
      }
      // By hand, at 11:31: free has its two backlog tasks and the 11:20 task queued; pro has the
      // 11:00 task (canceled at 11:33) queued and the 11:10 task running.
      assert.deepEqual(s.active[0]!.queued, { enterprise: 0, free: 3, pro: 1 });
      assert.deepEqual(s.active[0]!.running, { enterprise: 0, free: 0, pro: 1 });
      // At 12:20: the enterprise task has just started; pro's 12:11 task is still running (it
      // finishes at 12:20:00, so it is not running at 12:20); free has the 12:05:30 start running.
      const m1220 = s.active[49]!;
      assert.equal(m1220.at.toISOString(), '2026-03-01T12:20:00.000Z');
      assert.deepEqual(m1220.queued, { enterprise: 0, free: 2, pro: 0 });
      assert.deepEqual(m1220.running, { enterprise: 1, free: 1, pro: 0 });
      // The last minute, 12:30: pro's 12:25 task and its 12:29 one (it starts at 12:30:30) are
      // queued; what happens after 12:30:00 does not count.
      assert.deepEqual(s.active[59]!.queued, { enterprise: 1, free: 2, pro: 2 });
      assert.deepEqual(s.active[59]!.running, { enterprise: 1, free: 1, pro: 0 });
    }
  });
});
