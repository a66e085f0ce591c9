import type { AimdState } from '../policy/aimd.ts';
import type { Queryable } from './db.ts';

export interface ProviderStateRow {
  provider: string;
  key_id: string;
  effective_concurrency: number | null;
  success_streak: number;
  cooldown_until: Date | null;
  /** Why the key rests until cooldown_until when it is more than a short cool-down (a per-day quota). */
  cooldown_reason: string | null;
  /** cooldown_until when the key rests for a stated reason (a per-day quota, repeated hint-less 429s). */
  rest_until: Date | null;
  rate_limited_total: number;
  congestion_until: Date | null;
}

async function lockProviderRow(
  tx: Queryable,
  provider: string,
  cap: number,
): Promise<AimdState & { nowMs: number }> {
  await tx.query(
    `INSERT INTO provider_state (provider, key_id, effective_concurrency) VALUES ($1, '', $2) ON CONFLICT DO NOTHING`,
    [provider, cap],
  );
  const { rows } = await tx.query<ProviderStateRow & { now_ms: number }>(
    `SELECT *, (extract(epoch FROM now()) * 1000)::float8 AS now_ms FROM provider_state
      WHERE provider = $1 AND key_id = '' FOR UPDATE`,
    [provider],
  );
  const row = rows[0]!;
  return { ...aimdStateOf(row, cap), nowMs: row.now_ms };
}

function aimdStateOf(row: ProviderStateRow, cap: number): AimdState {
  return {
    effectiveConcurrency: Math.min(cap, row.effective_concurrency ?? cap),
    successStreak: row.success_streak,
    congestionUntilMs: row.congestion_until?.getTime(),
  };
}

async function saveProviderRow(tx: Queryable, provider: string, s: AimdState): Promise<void> {
  await tx.query(
    `UPDATE provider_state SET effective_concurrency = $2, success_streak = $3, updated_at = now(),
            congestion_until = to_timestamp($4::float8 / 1000)
      WHERE provider = $1 AND key_id = ''`,
    [provider, s.effectiveConcurrency, s.successStreak, s.congestionUntilMs ?? null],
  );
}

/** 429s without a retry hint in a row on this key so far. */
export async function unhintedStreak(q: Queryable, provider: string, keyId: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT unhinted_streak AS n FROM provider_state WHERE provider = $1 AND key_id = $2`,
    [provider, keyId],
  );
  return rows[0]?.n ?? 0;
}

/**
 * What the outcome's lock statement read of the provider's AIMD row and of the key's run of
 * hint-less 429s (src/store/attempts.ts), so a success need not read them again.
 */
export interface ProviderRead {
  row: ProviderStateRow | undefined;
  keyUnhintedStreak: number;
}

export async function recordProviderSuccess(
  tx: Queryable,
  provider: string,
  next: (s: AimdState) => AimdState,
  cap: number,
  keyId?: string | null,
  read?: ProviderRead,
): Promise<void> {
  // Every successful call of a provider lands here: a row lock taken for each would queue all
  // of a provider's outcome transactions behind one another (it was most of the outcome's time
  // at 16 calls in flight). At the cap a success changes nothing, so the row is read without a
  // lock and locked only when the success moves the state; the locked read then decides again
  // on the latest committed state. The key's run of hint-less 429s ends in the same statement.
  let seen: ProviderStateRow | undefined;
  if (read) {
    if (keyId && read.keyUnhintedStreak > 0)
      await tx.query(
        `UPDATE provider_state SET unhinted_streak = 0 WHERE provider = $1 AND key_id = $2 AND unhinted_streak > 0`,
        [provider, keyId],
      );
    seen = read.row;
  } else {
    seen = await readProviderRow(tx, provider, keyId ?? undefined);
  }
  if (seen && !changes(next, aimdStateOf(seen, cap))) return;
  const { nowMs: _now, ...current } = await lockProviderRow(tx, provider, cap);
  const updated = next(current);
  if (changes(next, current)) await saveProviderRow(tx, provider, updated);
}

function changes(next: (s: AimdState) => AimdState, current: AimdState): boolean {
  const updated = next(current);
  return (
    updated.effectiveConcurrency !== current.effectiveConcurrency ||
    updated.successStreak !== current.successStreak
  );
}

async function readProviderRow(
  q: Queryable,
  provider: string,
  resetStreakOf?: string,
): Promise<ProviderStateRow | undefined> {
  const { rows } = await q.query<ProviderStateRow>(
    resetStreakOf === undefined
      ? `SELECT * FROM provider_state WHERE provider = $1 AND key_id = ''`
      : `WITH reset AS (
           UPDATE provider_state SET unhinted_streak = 0
            WHERE provider = $1 AND key_id = $2 AND unhinted_streak > 0 RETURNING 1)
         SELECT * FROM provider_state WHERE provider = $1 AND key_id = ''`,
    resetStreakOf === undefined ? [provider] : [provider, resetStreakOf],
  );
  return rows[0];
}

/**
 * A 429: the key cools down for `retryAfterMs` (a daily quota rests it until the quota resets, with
 * `reason` saying so), the provider's concurrency shrinks. The later of two cool-downs wins, and
 * its reason with it. `next` gets the provider's AIMD state and the database's clock (ms) to
 * judge whether this 429 starts a new congestion event.
 */
export async function recordProviderRateLimit(
  tx: Queryable,
  provider: string,
  keyId: string,
  retryAfterMs: number,
  next: (s: AimdState, nowMs: number) => AimdState,
  cap: number,
  reason?: string | undefined,
  unhinted = false,
): Promise<void> {
  await tx.query(
    `INSERT INTO provider_state (provider, key_id, cooldown_until, cooldown_reason, rate_limited_total, unhinted_streak)
     VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond', $4, 1, CASE WHEN $5 THEN 1 ELSE 0 END)
     ON CONFLICT (provider, key_id) DO UPDATE
        SET unhinted_streak = CASE WHEN $5 THEN provider_state.unhinted_streak + 1 ELSE 0 END,
            cooldown_reason = CASE WHEN EXCLUDED.cooldown_until >= COALESCE(provider_state.cooldown_until, now())
                                   THEN EXCLUDED.cooldown_reason ELSE provider_state.cooldown_reason END,
            cooldown_until = GREATEST(COALESCE(provider_state.cooldown_until, now()), EXCLUDED.cooldown_until),
            rate_limited_total = provider_state.rate_limited_total + 1, updated_at = now()`,
    [provider, keyId, Math.max(0, Math.round(retryAfterMs)), reason ?? null, unhinted],
  );
  const { nowMs, ...current } = await lockProviderRow(tx, provider, cap);
  await saveProviderRow(tx, provider, next(current, nowMs));
}

/**
 * Milliseconds until the first of these keys is free of its cool-down: undefined when one is free
 * now. For the rate-limit bound: a job whose every key rests longer than it may wait fails instead
 * of waiting.
 */
export async function keysWaitMs(
  q: Queryable,
  provider: string,
  keyIds: string[],
): Promise<number | undefined> {
  if (keyIds.length === 0) return undefined;
  const { rows } = await q.query<{ key_id: string; wait_ms: number | null; resting: boolean }>(
    `SELECT key_id, (extract(epoch FROM cooldown_until - now()) * 1000)::float8 AS wait_ms,
            coalesce(cooldown_until > now(), false) AS resting
       FROM provider_state WHERE provider = $1 AND key_id = ANY($2::text[])`,
    [provider, keyIds],
  );
  if (rows.length < keyIds.length || rows.some((r) => !r.resting)) return undefined;
  return Math.min(...rows.map((r) => r.wait_ms!));
}

/**
 * Each key's rest as /v1/admin/providers shows it: until when and why (a per-day quota says so),
 * only for keys resting now.
 */
export async function keyRests(
  q: Queryable,
): Promise<Array<{ provider: string; key_id: string; rest_until: Date; reason: string | null }>> {
  const { rows } = await q.query<{
    provider: string;
    key_id: string;
    rest_until: Date;
    reason: string | null;
  }>(
    `SELECT provider, key_id, cooldown_until AS rest_until, cooldown_reason AS reason FROM provider_state
      WHERE key_id <> '' AND cooldown_until > now() ORDER BY provider, key_id`,
  );
  return rows;
}

export async function providerStates(q: Queryable): Promise<ProviderStateRow[]> {
  const { rows } = await q.query<ProviderStateRow>(
    `SELECT *, CASE WHEN cooldown_reason IS NOT NULL THEN cooldown_until END AS rest_until FROM provider_state`,
  );
  return rows;
}
