import type { AimdState } from '../policy/aimd.ts';
import type { Queryable } from './db.ts';

export interface ProviderStateRow {
  provider: string;
  key_id: string;
  effective_concurrency: number | null;
  success_streak: number;
  cooldown_until: Date | null;
  rate_limited_total: number;
}

async function lockProviderRow(tx: Queryable, provider: string, cap: number): Promise<AimdState> {
  await tx.query(
    `INSERT INTO provider_state (provider, key_id, effective_concurrency) VALUES ($1, '', $2) ON CONFLICT DO NOTHING`,
    [provider, cap],
  );
  const { rows } = await tx.query<ProviderStateRow>(
    `SELECT * FROM provider_state WHERE provider = $1 AND key_id = '' FOR UPDATE`,
    [provider],
  );
  const row = rows[0]!;
  return {
    effectiveConcurrency: Math.min(cap, row.effective_concurrency ?? cap),
    successStreak: row.success_streak,
  };
}

async function saveProviderRow(tx: Queryable, provider: string, s: AimdState): Promise<void> {
  await tx.query(
    `UPDATE provider_state SET effective_concurrency = $2, success_streak = $3, updated_at = now() WHERE provider = $1 AND key_id = ''`,
    [provider, s.effectiveConcurrency, s.successStreak],
  );
}

export async function recordProviderSuccess(
  tx: Queryable,
  provider: string,
  next: (s: AimdState) => AimdState,
  cap: number,
): Promise<void> {
  const current = await lockProviderRow(tx, provider, cap);
  const updated = next(current);
  if (
    updated.effectiveConcurrency !== current.effectiveConcurrency ||
    updated.successStreak !== current.successStreak
  ) {
    await saveProviderRow(tx, provider, updated);
  }
}

/** A 429: the key cools down for `retryAfterMs`, the provider's concurrency shrinks. */
export async function recordProviderRateLimit(
  tx: Queryable,
  provider: string,
  keyId: string,
  retryAfterMs: number,
  next: (s: AimdState) => AimdState,
  cap: number,
): Promise<void> {
  await tx.query(
    `INSERT INTO provider_state (provider, key_id, cooldown_until, rate_limited_total)
     VALUES ($1, $2, now() + $3::int * interval '1 millisecond', 1)
     ON CONFLICT (provider, key_id) DO UPDATE
        SET cooldown_until = GREATEST(COALESCE(provider_state.cooldown_until, now()), EXCLUDED.cooldown_until),
            rate_limited_total = provider_state.rate_limited_total + 1, updated_at = now()`,
    [provider, keyId, Math.max(0, Math.round(retryAfterMs))],
  );
  const current = await lockProviderRow(tx, provider, cap);
  await saveProviderRow(tx, provider, next(current));
}

export async function providerStates(q: Queryable): Promise<ProviderStateRow[]> {
  const { rows } = await q.query<ProviderStateRow>('SELECT * FROM provider_state');
  return rows;
}
