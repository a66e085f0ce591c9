import type { Context } from '../context.ts';
import { AppError } from '../errors.ts';

interface Streams {
  total: number;
  byUser: Map<string, number>;
}

// One count per running app (its Context), so tests with several servers in one process do not share it.
const open = new WeakMap<Context, Streams>();

/**
 * Admits one more SSE stream for `userId`, or refuses it: each stream polls the database, so
 * thousands of them would starve every other request (`/healthz` included). Past
 * `server.maxEventStreamsPerUser` the answer is 429 `too_many_streams`; past
 * `server.maxEventStreams` in this process, 503 `server_busy`. Returns the release function.
 */
export function admitStream(ctx: Context, userId: string): () => void {
  let streams = open.get(ctx);
  if (!streams) open.set(ctx, (streams = { total: 0, byUser: new Map() }));
  const { maxEventStreams, maxEventStreamsPerUser } = ctx.config.server;
  const mine = streams.byUser.get(userId) ?? 0;
  if (mine >= maxEventStreamsPerUser)
    throw new AppError(
      'too_many_streams',
      `user "${userId}" already has ${mine} event streams open (limit ${maxEventStreamsPerUser}); close one or poll GET /v1/tasks/:id`,
      { retryAfterSeconds: 5 },
    );
  if (streams.total >= maxEventStreams)
    throw new AppError(
      'server_busy',
      `this server has ${streams.total} event streams open (limit ${maxEventStreams}); poll GET /v1/tasks/:id or retry later`,
      { retryAfterSeconds: 5 },
    );
  streams.total += 1;
  streams.byUser.set(userId, mine + 1);
  let released = false;
  const s = streams;
  return () => {
    if (released) return;
    released = true;
    s.total -= 1;
    const left = (s.byUser.get(userId) ?? 1) - 1;
    if (left > 0) s.byUser.set(userId, left);
    else s.byUser.delete(userId);
  };
}
