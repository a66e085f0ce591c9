import type { Queryable } from './db.ts';

/**
 * Takes or renews the scheduler lease, stamped with the database's clock at the moment the
 * statement runs (`clock_timestamp()`, not the statement's start: an upsert that waited on a
 * lock must not judge expiry by the time it began waiting). Returns the term when this
 * candidate holds the lease, undefined otherwise. A new holder starts a new term; every
 * admission write is fenced by the term, so a paused old leader cannot admit after losing it.
 */
export async function acquireLeadership(
  q: Queryable,
  candidate: string,
  leaseMs: number,
): Promise<number | undefined> {
  const { rows } = await q.query<{ term: number }>(
    `INSERT INTO scheduler_leader (id, holder, term, expires_at)
     VALUES (1, $1, 1, clock_timestamp() + $2::int * interval '1 millisecond')
     ON CONFLICT (id) DO UPDATE
        SET holder = EXCLUDED.holder,
            term = CASE WHEN scheduler_leader.holder = EXCLUDED.holder AND scheduler_leader.expires_at >= clock_timestamp()
                        THEN scheduler_leader.term ELSE scheduler_leader.term + 1 END,
            expires_at = clock_timestamp() + $2::int * interval '1 millisecond'
      WHERE scheduler_leader.holder = EXCLUDED.holder OR scheduler_leader.expires_at < clock_timestamp()
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

/**
 * The fence, as a CTE for a single-statement write: yields one row only while `$holder`
 * still holds `$term` and its lease has not run out. It writes the leader row (a no-op
 * update), so a takeover racing with the statement waits for it and then sees its effects;
 * the row lock lasts one statement, never across a client round trip.
 */
export function fenceCte(holderParam: string, termParam: string): string {
  return `UPDATE scheduler_leader SET term = term
           WHERE id = 1 AND holder = ${holderParam} AND term = ${termParam} AND expires_at > clock_timestamp()
          RETURNING term`;
}
