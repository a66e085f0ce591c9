import type { Queryable } from './db.ts';

/**
 * NOTIFYs sent after a transaction instead of from it. A transaction that notifies takes one
 * lock for the whole cluster at COMMIT and holds it through its WAL flush (PostgreSQL queues
 * notifications in commit order: src/backend/commands/async.c, PreCommit_Notify), so every
 * notifying commit waits for the flushes of all notifying commits before it, while holding its
 * task's row lock. A job's outcome only wakes the scheduler and SSE streams, hints with polling
 * behind them: this sends them right after its commit, in one statement for everything pending
 * (identical ones folded), with the statement's own commit asynchronous (it writes nothing to
 * keep), so it neither waits for a flush nor makes others wait for one. Sends never overlap:
 * what arrives while one is on its way goes in the next.
 */
export interface AfterCommitNotifier {
  /** Queues NOTIFY `channel` with `payload`; returns at once. */
  send(channel: string, payload?: string): void;
  /** Resolves once everything queued so far has been sent (or failed). */
  flush(): Promise<void>;
}

export function createAfterCommitNotifier(
  q: Queryable,
  onError: (error: unknown) => void,
): AfterCommitNotifier {
  let pending = new Map<string, { channel: string; payload: string }>();
  let sending: Promise<void> | undefined;

  async function sendAll(): Promise<void> {
    while (pending.size > 0) {
      const batch = [...pending.values()];
      pending = new Map();
      try {
        await q.query(
          `SELECT set_config('synchronous_commit', 'off', true), pg_notify(x.channel, x.payload)
             FROM unnest($1::text[], $2::text[]) AS x(channel, payload)`,
          [batch.map((n) => n.channel), batch.map((n) => n.payload)],
        );
      } catch (error) {
        onError(error);
      }
    }
    sending = undefined;
  }

  return {
    send(channel, payload = '') {
      pending.set(`${channel}\0${payload}`, { channel, payload });
      sending ??= sendAll();
    },
    async flush() {
      while (sending) await sending;
    },
  };
}
