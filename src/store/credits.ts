import type { Queryable } from './db.ts';

/** Creates the user with the initial grant on first sight (ledger row included). */
export async function ensureUser(tx: Queryable, userId: string, initialGrant: number): Promise<void> {
  const { rowCount } = await tx.query(
    'INSERT INTO users (id, balance) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING',
    [userId, initialGrant],
  );
  if (rowCount > 0 && initialGrant !== 0) {
    await tx.query(`INSERT INTO credit_ledger (user_id, delta, reason) VALUES ($1, $2, 'grant')`, [
      userId,
      initialGrant,
    ]);
  }
}

/**
 * Refunds a task attempt at most once, whatever calls it: the ledger's unique (task, reason, attempt) index
 * decides, and the balance only moves when the ledger row was new. Returns the amount refunded now.
 */
export async function refundTask(
  tx: Queryable,
  userId: string,
  taskId: string,
  amount: number,
  attempt = 1,
): Promise<number> {
  if (amount <= 0) return 0;
  const { rowCount } = await tx.query(
    `INSERT INTO credit_ledger (user_id, task_id, delta, reason, attempt) VALUES ($1, $2, $3, 'refund', $4)
     ON CONFLICT (task_id, reason, attempt) WHERE task_id IS NOT NULL DO NOTHING`,
    [userId, taskId, amount, attempt],
  );
  if (rowCount === 0) return 0;
  await tx.query('UPDATE users SET balance = balance + $2 WHERE id = $1', [userId, amount]);
  return amount;
}

export async function getBalance(q: Queryable, userId: string): Promise<number | undefined> {
  const { rows } = await q.query<{ balance: number }>('SELECT balance FROM users WHERE id = $1', [userId]);
  return rows[0]?.balance;
}

export async function adjustCredits(
  tx: Queryable,
  userId: string,
  delta: number,
  initialGrant: number,
  /** Why, kept in the ledger row (admin adjustments). */
  note: string | null = null,
): Promise<number> {
  await ensureUser(tx, userId, initialGrant);
  const { rows } = await tx.query<{ balance: number }>(
    'UPDATE users SET balance = balance + $2 WHERE id = $1 RETURNING balance',
    [userId, delta],
  );
  await tx.query(`INSERT INTO credit_ledger (user_id, delta, reason, note) VALUES ($1, $2, 'adjust', $3)`, [
    userId,
    delta,
    note,
  ]);
  return rows[0]!.balance;
}

export interface LedgerRow {
  id: number;
  task_id: string | null;
  delta: number;
  reason: string;
  attempt: number;
  note: string | null;
  created_at: Date;
}

/** A user's newest ledger rows (index credit_ledger_user). */
export async function ledgerOf(q: Queryable, userId: string, limit: number): Promise<LedgerRow[]> {
  const { rows } = await q.query<LedgerRow>(
    `SELECT id::int AS id, task_id, delta, reason, attempt, note, created_at FROM credit_ledger
      WHERE user_id = $1 ORDER BY id DESC LIMIT $2`,
    [userId, limit],
  );
  return rows;
}
