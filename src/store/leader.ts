import type { Queryable } from './db.ts';

/**
 * Takes or renews the scheduler lease, stamped with the database's clock. Returns the term
 * when this candidate holds the lease, undefined otherwise. A new holder starts a new term;
 * every admission write checks the term, so a paused old leader cannot admit after losing it.
 */
export async function acquireLeadership(
  q: Queryable,
  candidate: string,
  leaseMs: number,
): Promise<number | undefined> {
  const { rows } = await q.query<{ term: number }>(
    `INSERT INTO scheduler_leader (id, holder, term, expires_at)
     VALUES (1, $1, 1, now() + $2::int * interval '1 millisecond')
     ON CONFLICT (id) DO UPDATE
        SET holder = EXCLUDED.holder,
            term = CASE WHEN scheduler_leader.holder = EXCLUDED.holder AND scheduler_leader.expires_at >= now()
                        THEN scheduler_leader.term ELSE scheduler_leader.term + 1 END,
            expires_at = EXCLUDED.expires_at
      WHERE scheduler_leader.holder = EXCLUDED.holder OR scheduler_leader.expires_at < now()
     RETURNING term::int AS term`,
    [candidate, leaseMs],
  );
  return rows[0]?.term;
}

export async function resignLeadership(q: Queryable, candidate: string): Promise<void> {
  await q.query(`UPDATE scheduler_leader SET expires_at = now() - interval '1 second' WHERE holder = $1`, [
    candidate,
  ]);
}

export async function currentLeader(
  q: Queryable,
): Promise<{ holder: string; term: number; expires_at: Date } | undefined> {
  const { rows } = await q.query<{ holder: string; term: number; expires_at: Date }>(
    'SELECT holder, term::int AS term, expires_at FROM scheduler_leader WHERE id = 1',
  );
  return rows[0];
}

/** The fence: true only inside a transaction where `candidate` still holds `term`. */
export async function holdsTerm(tx: Queryable, candidate: string, term: number): Promise<boolean> {
  const { rows } = await tx.query<{ ok: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM scheduler_leader WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > now()
                    FOR UPDATE) AS ok`,
    [candidate, term],
  );
  return rows[0]?.ok === true;
}
