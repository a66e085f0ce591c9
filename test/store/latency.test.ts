import assert from 'node:assert/strict';
import { it } from 'node:test';
import { minuteSeries } from '../../src/store/latency.ts';
import { describeEachDb, useTestDb } from '../helpers/db.ts';

/**
 * Tasks with injected timestamps around a fixed instant, then the per-minute series checked
 * against percentiles computed here independently (the R-7 / linear-interpolation definition,
 * which is what PostgreSQL's percentile_cont computes) and against hand-derived figures.
 */

const AT = new Date('2026-03-01T12:30:20Z');
const FROM = new Date('2026-03-01T11:31:00Z'); // the minute of AT, less 59 minutes

/** Linear interpolation between closest ranks (Hyndman & Fan type 7). */
function percentile(values: number[], p: number): number {
  const x = [...values].sort((a, b) => a - b);
  const h = (x.length - 1) * p;
  const lo = Math.floor(h);
  return x[lo]! + (h - lo) * ((x[Math.min(lo + 1, x.length - 1)] ?? x[lo]!) - x[lo]!);
}

interface Injected {
  state: 'queued' | 'running' | 'succeeded' | 'partial' | 'failed' | 'canceled';
  created: string;
  /** Seconds after created. */
  wait?: number;
  /** Seconds after created. */
  total?: number;
  images?: number;
}

const at = (iso: string) => new Date(`2026-03-01T${iso}Z`);
const plus = (d: Date, s: number) => new Date(d.getTime() + s * 1000);

describeEachDb('per-minute queue wait and completion series of the last hour', (kind) => {
  const t = useTestDb(kind);
  let n = 0;

  async function inject(task: Injected): Promise<void> {
    const created = at(task.created);
    const started = task.wait === undefined ? null : plus(created, task.wait);
    const finished = task.total === undefined ? null : plus(created, task.total);
    await t.db.query(
      `INSERT INTO tasks (id, user_id, type, plan, seed, weight, state, images_total, images_done,
                          credits_charged, created_at, started_at, finished_at)
       VALUES ($1, 'u', 'photography', 'free', 1, 1, $2, 2, $3, 2, $4, $5, $6)`,
      [`lat-${++n}`, task.state, task.images ?? 0, created, started, finished],
    );
  }

  it('buckets starts and finishes by minute, with percentiles an independent computation agrees with', async () => {
    // Minute 12:10: four delivered tasks finish at 12:10:05, completion 10, 20, 30, 40 s. By hand:
    // p50 = (20 + 30) / 2 = 25; p95 at rank 0.95·3 = 2.85 → 30 + 0.85·10 = 38.5.
    // They started at 12:09:2x–5x after waits of 1, 2, 3, 4 s: those fall in minute 12:09.
    for (const [i, total] of [10, 20, 30, 40].entries())
      await inject({
        state: i === 3 ? 'partial' : 'succeeded',
        created: `12:09:${String(65 - total)}`,
        wait: i + 1,
        total,
        images: 2,
      });
    // Also finishing in 12:10: a failed task and a task canceled while queued. They count as
    // finished tasks but have no completion time (nothing delivered); the canceled one never
    // started, so it has no queue wait either.
    await inject({ state: 'failed', created: '12:09:00', wait: 5, total: 65, images: 0 });
    await inject({ state: 'canceled', created: '12:09:30', total: 40 });

    // Minute 12:00: seven tasks start with waits that need interpolation.
    const waits = [3, 1, 4, 1, 5, 9, 2.5];
    for (const w of waits)
      await inject({ state: 'succeeded', created: '11:59:40', wait: 20 + w, total: 30, images: 1 });

    // Still running: started 12:29:10 after 7 s queued. Finishing after AT: started in the window.
    await inject({ state: 'running', created: '12:29:03', wait: 7 });
    await inject({ state: 'succeeded', created: '12:29:40', wait: 6, total: 80, images: 2 });
    // Started before the window, finished in it: a completion (at 11:40) and no wait.
    await inject({ state: 'succeeded', created: '11:20:00', wait: 60, total: 1200, images: 2 });
    // Entirely before the window, and a queued task: neither shows anywhere.
    await inject({ state: 'succeeded', created: '10:00:00', wait: 1, total: 2, images: 2 });
    await inject({ state: 'queued', created: '12:15:00' });

    const s = await minuteSeries(t.db, AT);
    assert.equal(s.from.toISOString(), FROM.toISOString());
    assert.equal(s.to.toISOString(), AT.toISOString());
    const iso = (b: { at: Date }) => b.at.toISOString().slice(11, 16);

    assert.deepEqual(
      s.completion.map((b) => [iso(b), b.n]),
      [
        ['11:40', 1],
        ['12:00', 7],
        ['12:10', 4],
      ],
    );
    const c1210 = s.completion.find((b) => iso(b) === '12:10')!;
    assert.equal(c1210.p50, 25);
    assert.ok(Math.abs(c1210.p95 - 38.5) < 1e-9, String(c1210.p95));
    const c1200 = s.completion.find((b) => iso(b) === '12:00')!;
    assert.equal(c1200.p50, 30);
    assert.equal(s.completion[0]!.p50, 1200);

    assert.deepEqual(
      s.queueWait.map((b) => [iso(b), b.n]),
      [
        ['12:00', 7],
        ['12:09', 5],
        ['12:29', 2],
      ],
    );
    const w1200 = s.queueWait.find((b) => iso(b) === '12:00')!;
    const expected = waits.map((w) => 20 + w);
    assert.ok(Math.abs(w1200.p50 - percentile(expected, 0.5)) < 1e-9, `${w1200.p50}`);
    assert.ok(Math.abs(w1200.p95 - percentile(expected, 0.95)) < 1e-9, `${w1200.p95}`);
    // By hand: sorted 21 21 22.5 23 24 25 29; p50 = 23; p95 at rank 5.7 → 25 + 0.7·4 = 27.8.
    assert.equal(w1200.p50, 23);
    assert.ok(Math.abs(w1200.p95 - 27.8) < 1e-9, `${w1200.p95}`);
    const w1209 = s.queueWait.find((b) => iso(b) === '12:09')!;
    assert.deepEqual(
      [w1209.p50, Math.round(w1209.p95 * 1000) / 1000],
      [3, percentile([1, 2, 3, 4, 5], 0.95)],
    );
    const w1229 = s.queueWait.find((b) => iso(b) === '12:29')!;
    assert.equal(w1229.p50, 6.5);

    assert.deepEqual(
      s.finished.map((b) => [iso(b), b.tasks, b.images]),
      [
        ['11:40', 1, 2],
        ['12:00', 7, 7],
        ['12:10', 6, 8],
      ],
    );
  });
});
