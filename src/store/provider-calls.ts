import type { Queryable } from './db.ts';

export type CallOutcome = 'success' | 'rate_limited' | 'transient' | 'permanent' | 'timeout';

export interface ProviderCallRecord {
  provider: string;
  keyId: string;
  outcome: CallOutcome;
  latencyMs: number;
  /** The failure's message (not stored for successes). */
  message?: string | undefined;
}

/** Logs one provider call; a failure also becomes the key's last error. */
export async function recordProviderCall(q: Queryable, call: ProviderCallRecord): Promise<void> {
  await q.query(
    `INSERT INTO provider_calls (provider, key_id, outcome, latency_ms) VALUES ($1, $2, $3, $4)`,
    [call.provider, call.keyId, call.outcome, Math.max(0, Math.round(call.latencyMs))],
  );
  if (call.outcome !== 'success') {
    await q.query(
      `INSERT INTO provider_key_errors (provider, key_id, outcome, message) VALUES ($1, $2, $3, $4)
       ON CONFLICT (provider, key_id) DO UPDATE SET outcome = EXCLUDED.outcome, message = EXCLUDED.message, at = now()`,
      [call.provider, call.keyId, call.outcome, (call.message ?? '').slice(0, 500)],
    );
  }
}

export interface CallWindowRow {
  provider: string;
  key_id: string;
  calls: number;
  rate_limited: number;
  /** Failures other than 429s: transient, permanent, timeout. */
  errors: number;
}

/** Calls per provider and key over the last `windowMs` (an index range scan on `at`). */
export async function callsInWindow(q: Queryable, windowMs: number): Promise<CallWindowRow[]> {
  const { rows } = await q.query<CallWindowRow>(
    `SELECT provider, key_id, count(*)::int AS calls,
            count(*) FILTER (WHERE outcome = 'rate_limited')::int AS rate_limited,
            count(*) FILTER (WHERE outcome IN ('transient', 'permanent', 'timeout'))::int AS errors
       FROM provider_calls WHERE at > now() - $1::int * interval '1 millisecond'
      GROUP BY provider, key_id`,
    [windowMs],
  );
  return rows;
}

export interface KeyErrorRow {
  provider: string;
  key_id: string;
  outcome: string;
  message: string;
  at: Date;
}

export async function lastKeyErrors(q: Queryable): Promise<KeyErrorRow[]> {
  const { rows } = await q.query<KeyErrorRow>(
    'SELECT provider, key_id, outcome, message, at FROM provider_key_errors',
  );
  return rows;
}

/** Drops call records older than `keepMs`; returns how many. */
export async function pruneProviderCalls(q: Queryable, keepMs: number): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM provider_calls WHERE at < now() - $1::int * interval '1 millisecond'`,
    [keepMs],
  );
  return rowCount;
}
