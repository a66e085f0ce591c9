import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { mergeIntervals } from '../chaos/liveness.ts';
import { makePlan } from '../chaos/plan.ts';
import { CuttableProxy } from '../chaos/proxy.ts';
import { FORMS } from '../chaos/settings.ts';

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
