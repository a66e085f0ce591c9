import type { Queryable } from '../../src/store/db.ts';

export interface StoredRows {
  users: number;
  ledger: number;
  balance: number;
  uploads: number;
  tasks: number;
  jobs: number;
  events: number;
  idempotency: number;
}

/** What a refused request must leave unchanged: every row a submit or an upload could write, and the credits. */
export async function storedRows(db: Queryable): Promise<StoredRows> {
  const { rows } = await db.query<StoredRows>(
    `SELECT (SELECT count(*)::int FROM users) AS users,
            (SELECT count(*)::int FROM credit_ledger) AS ledger,
            (SELECT coalesce(sum(balance), 0)::int FROM users) AS balance,
            (SELECT count(*)::int FROM uploads) AS uploads,
            (SELECT count(*)::int FROM tasks) AS tasks,
            (SELECT count(*)::int FROM jobs) AS jobs,
            (SELECT count(*)::int FROM events) AS events,
            (SELECT count(*)::int FROM idempotency_keys) AS idempotency`,
  );
  return rows[0]!;
}
