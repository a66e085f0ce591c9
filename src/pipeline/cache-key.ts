import { createHash } from 'node:crypto';

export interface CacheKeyParts {
  provider: string;
  providerType: string;
  model: string | undefined;
  step: string;
  prompt: string;
  params: Record<string, unknown>;
  /** The caller's explicit seed, or null: then any run of the same request is reusable. */
  seed: number | null;
  /** sha256 of each input image's content, in order. */
  inputHashes: string[];
  firstIndex: number;
  count: number;
}

/** Stable JSON: object keys sorted, so the same request always hashes the same. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** The result-cache key of one provider call (pure). */
export function resultCacheKey(parts: CacheKeyParts): string {
  return createHash('sha256')
    .update(JSON.stringify(canonical(parts)))
    .digest('hex');
}
