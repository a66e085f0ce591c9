import assert from 'node:assert/strict';
import { it } from 'node:test';
import { chooseRows, type RowMemo } from '../../src/scheduler/forecast-rows.ts';
import type { TaskForecastWrite } from '../../src/store/forecasts.ts';

/** Ten queued tasks a…j at positions 0…9, finishing 100 s … 1,000 s from now (now = 0). */
function queue(): TaskForecastWrite {
  const ids = [...'abcdefghij'];
  return {
    ids,
    positions: ids.map((_, i) => i),
    startMs: ids.map((_, i) => i * 100_000),
    finishMs: ids.map((_, i) => (i + 1) * 100_000),
    simulated: ids.map(() => true),
  };
}

function memoOf(tasks: TaskForecastWrite, pass: number): Map<string, RowMemo> {
  return new Map(tasks.ids.map((id, i) => [id, { finishMs: tasks.finishMs[i]!, simulated: true, pass }]));
}

it('writes the head, newcomers, the biggest moves (half the tail share) and the oldest tail rows', () => {
  const tasks = queue();
  const memo = memoOf(tasks, 5);
  memo.delete('j'); // never written: a newcomer
  // c's finish moved 100 s of its 300 s to go (33 %); d's basis changed; e moved 20 s of 500 s (4 %).
  memo.set('c', { finishMs: 200_000, simulated: true, pass: 5 });
  memo.set('d', { finishMs: 400_000, simulated: false, pass: 5 });
  memo.set('e', { finishMs: 480_000, simulated: true, pass: 5 });
  // g and h were written longest ago.
  memo.set('g', { ...memo.get('g')!, pass: 1 });
  memo.set('h', { ...memo.get('h')!, pass: 2 });
  const choice = chooseRows(tasks, memo, 0, { headRows: 2, tailRows: 4 });
  // a, b: head; c, d: moved (cap 4 / 2 = 2); g, h: the rest of the tail share, oldest first; j: new.
  assert.deepEqual(
    choice.indexes.map((i) => tasks.ids[i]),
    ['a', 'b', 'c', 'd', 'g', 'h', 'j'],
  );
  assert.deepEqual(
    { head: choice.head, fresh: choice.fresh, moved: choice.moved, rotated: choice.rotated },
    { head: 2, fresh: 1, moved: 2, rotated: 2 },
  );
});

it('moves past the cap wait for their turn in the rotation; nothing moved: only head and rotation', () => {
  const tasks = queue();
  const memo = memoOf(tasks, 3);
  // Every tail task moved by half its time to go: only 1 (= 3 / 2, rounded down) is taken as moved,
  // the biggest; the rotation then takes the 2 written longest ago (all at pass 3: forecast order).
  for (let i = 2; i < 10; i++)
    memo.set(tasks.ids[i]!, {
      finishMs: tasks.finishMs[i]! * (i === 6 ? 0.2 : 0.5),
      simulated: true,
      pass: 3,
    });
  const moved = chooseRows(tasks, memo, 0, { headRows: 2, tailRows: 3 });
  assert.deepEqual(
    moved.indexes.map((i) => tasks.ids[i]),
    ['a', 'b', 'c', 'd', 'g'],
  );
  const still = chooseRows(tasks, memoOf(tasks, 3), 0, { headRows: 2, tailRows: 3 });
  assert.deepEqual(
    still.indexes.map((i) => tasks.ids[i]),
    ['a', 'b', 'c', 'd', 'e'],
  );
  assert.equal(still.moved, 0);
});
