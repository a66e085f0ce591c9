import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { FakeStats } from '../../src/providers/fake-server/index.ts';
import { checkProviderLimits } from '../chaos/auditor.ts';
import { mergeIntervals, stallsOf } from '../chaos/liveness.ts';
import { makePlan } from '../chaos/plan.ts';
import { CuttableProxy } from '../chaos/proxy.ts';
import { FORMS, PROVIDERS } from '../chaos/settings.ts';

/** The chaos run's own parts (test/chaos): its plan is the seed's alone, its proxy cuts for real. */
describe('chaos harness', () => {
  it('draws the same workload and fault schedule from the same seed, and another from another', () => {
    const a = makePlan(42, FORMS.full);
    assert.deepEqual(makePlan(42, FORMS.full), a);
    assert.notDeepEqual(makePlan(43, FORMS.full), a);
    const submits = a.work.filter((w) => w.kind === 'submit');
    assert.equal(submits.length, FORMS.full.tasks);
    const count = (kind: string) => a.faults.filter((f) => f.kind === kind).length;
    assert.deepEqual(
      [
        count('worker_kill'),
        count('leader_kill'),
        count('leader_stop'),
        count('pg_restart'),
        count('partition'),
      ],
      [
        FORMS.full.workerKills,
        FORMS.full.leaderKills,
        FORMS.full.leaderStops,
        FORMS.full.pgRestarts,
        FORMS.full.partitions,
      ],
    );
    // Disruptive faults keep to their own slots: none starts within 1% of the window of another.
    const disruptive = a.faults.filter((f) => f.kind !== 'worker_kill' && f.kind !== 'provider_faults');
    for (let i = 1; i < disruptive.length; i++)
      assert.ok(disruptive[i]!.at - disruptive[i - 1]!.at > FORMS.full.submitWindowMs * 0.01);
  });

  it('merges intervals', () => {
    assert.deepEqual(
      mergeIntervals([
        [5, 7],
        [1, 3],
        [2, 4],
        [7, 9],
        [10, 10],
      ]),
      [
        [1, 4],
        [5, 9],
      ],
    );
  });

  it('finds a stall no fault explains, and not one a fault does, nor idle time', () => {
    const s = 1000;
    // Jobs end every second over [0, 100 s] but none in (30 s, 50 s); a task is outstanding throughout.
    const progress = Array.from({ length: 101 }, (_, i) => i * s).filter((t) => t <= 30 * s || t >= 50 * s);
    const busy: Array<[number, number]> = [[0, 100 * s]];
    const bare = stallsOf(progress, busy, []);
    assert.equal(bare.longestMs, 20 * s);
    assert.equal(bare.longestUnexplainedMs, 20 * s);
    assert.deepEqual(bare.unexplained, [{ from: 30 * s, busyMs: 20 * s, unexplainedMs: 20 * s }]);
    // A fault from 31 s to 35 s that may hold progress back 12 s more explains 16 s of it.
    const explained = stallsOf(progress, busy, [[31 * s, 47 * s]]);
    assert.equal(explained.longestMs, 20 * s);
    assert.equal(explained.longestUnexplainedMs, 4 * s);
    assert.deepEqual(explained.unexplained, []);
    // No task outstanding during the gap: nothing to make progress on, no stall.
    const idle = stallsOf(
      progress,
      [
        [0, 30 * s],
        [50 * s, 100 * s],
      ],
      [],
    );
    assert.equal(idle.longestMs, 1 * s);
    assert.deepEqual(idle.unexplained, []);
  });

  it('flags every kind of provider limit the simulator saw broken, and nothing when none was', () => {
    const stats = (over: {
      rpm?: number;
      concurrency?: number;
      inFlight?: number;
      keyInFlight?: number;
      window?: number;
    }): FakeStats => ({
      providers: Object.fromEntries(
        Object.entries(PROVIDERS).map(([name, p]) => [
          name,
          {
            keys: Object.fromEntries(
              p.keys.map((k) => [
                k.id,
                {
                  requests: 10,
                  rejected_429: 0,
                  max_in_flight: over.keyInFlight ?? k.concurrency,
                  max_requests_in_any_60s_window: over.window ?? k.rpm,
                },
              ]),
            ),
            totals: {
              max_in_flight: over.inFlight ?? p.concurrency,
              rejected: { rpm: over.rpm ?? 0, concurrency: over.concurrency ?? 0, scripted: 5 },
              faults_queued: 0,
            },
          },
        ]),
      ),
    });
    const found = (s: FakeStats) => {
      const out: string[] = [];
      checkProviderLimits(s, (_invariant, detail) => out.push(detail));
      return out.length;
    };
    const providers = Object.keys(PROVIDERS).length;
    const keys = Object.values(PROVIDERS).reduce((n, p) => n + p.keys.length, 0);
    assert.equal(found(stats({})), 0, 'at the limits is within them');
    assert.equal(found(stats({ rpm: 1 })), providers);
    assert.equal(found(stats({ concurrency: 1 })), providers);
    assert.equal(found(stats({ inFlight: 99 })), providers);
    assert.equal(found(stats({ keyInFlight: 99 })), keys);
    assert.equal(found(stats({ window: 999 })), keys);
  });

  it('passes bytes through, then resets or blackholes connections when cut', async () => {
    const echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const proxy = new CuttableProxy('127.0.0.1', (echo.address() as net.AddressInfo).port);
    const port = await proxy.listen();
    const connect = async () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise((resolve) => socket.once('connect', resolve));
      return socket;
    };
    const roundTrip = (socket: net.Socket, text: string, waitMs: number) =>
      new Promise<string | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), waitMs);
        socket.once('data', (d) => {
          clearTimeout(timer);
          resolve(d.toString());
        });
        socket.write(text);
      });
    try {
      const a = await connect();
      assert.equal(await roundTrip(a, 'ping', 10_000), 'ping');
      proxy.cut('blackhole');
      assert.equal(await roundTrip(a, 'lost', 300), undefined, 'nothing passes a blackhole');
      assert.equal(a.destroyed, false, 'and the connection stays open');
      proxy.heal();
      await new Promise((resolve) => a.once('close', resolve));
      const b = await connect();
      assert.equal(await roundTrip(b, 'again', 10_000), 'again');
      proxy.cut('reset');
      await new Promise((resolve) => b.once('close', resolve));
      const c = net.connect(port, '127.0.0.1');
      c.on('error', () => {});
      await new Promise((resolve) => c.once('close', resolve));
      proxy.heal();
      const d = await connect();
      assert.equal(await roundTrip(d, 'healed', 10_000), 'healed');
      d.destroy();
    } finally {
      await proxy.close();
      echo.close();
    }
  });
});
