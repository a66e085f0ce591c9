import { requestsFor, UNLIMITED } from './capabilities.ts';
import type {
  ProviderAdapter,
  ProviderCall,
  ProviderFailure,
  ProviderImage,
  ProviderOutcome,
} from './types.ts';

/**
 * A call of more images than one request may ask for (src/providers/capabilities.ts) becomes one
 * request per `maxImagesPerRequest` images, all sent at once on the call's key: the scheduler
 * admitted the job as that many requests. The images that come back are kept; when some requests
 * fail, the outcome is a partial success whose `shortfall` classifies the images still owed, and
 * when all fail, the most retryable of their failures.
 */
export function withRequestLimit(adapter: ProviderAdapter, maxImagesPerRequest: number): ProviderAdapter {
  if (maxImagesPerRequest === UNLIMITED) return adapter;
  return {
    ...adapter,
    call: (call) =>
      call.count <= maxImagesPerRequest ? adapter.call(call) : fanOut(adapter, call, maxImagesPerRequest),
  };
}

/** Seeds of sub-calls: distinct per image, the way the worker derives a batch's seed from its index. */
const SEED_STEP = 7919;

async function fanOut(adapter: ProviderAdapter, call: ProviderCall, per: number): Promise<ProviderOutcome> {
  const parts = requestsFor(call.count, per);
  // The call is answered once every request is: each part counts once, when it says it is
  // answered or when it returns.
  let open = parts;
  const answeredOnce = () => {
    let counted = false;
    return () => {
      if (counted) return;
      counted = true;
      if (--open === 0) call.onAnswered?.();
    };
  };
  const outcomes = await Promise.all(
    Array.from({ length: parts }, async (_, i) => {
      const offset = i * per;
      const answered = answeredOnce();
      const outcome = await adapter.call({
        ...call,
        count: Math.min(per, call.count - offset),
        firstIndex: call.firstIndex + offset,
        seed: (call.seed + offset * SEED_STEP) % 2 ** 31,
        // Progress of a split call is not meaningful per part; remote handles are per request.
        onProgress: undefined,
        remoteRef: undefined,
        onAnswered: answered,
      });
      answered();
      return outcome;
    }),
  );
  return mergeOutcomes(outcomes);
}

/** Failures from most to least worth retrying the whole remainder for. */
const RANK: Record<ProviderFailure['kind'], number> = {
  rate_limited: 0,
  transient: 1,
  timeout: 2,
  permanent: 3,
};

/** One outcome for several requests of one call (exported for tests). */
export function mergeOutcomes(outcomes: ProviderOutcome[]): ProviderOutcome {
  const images: ProviderImage[] = [];
  const failures: ProviderFailure[] = [];
  for (const o of outcomes) {
    if (o.kind === 'success') {
      images.push(...o.images);
      if (o.shortfall) failures.push(o.shortfall);
    } else failures.push(o);
  }
  if (failures.length === 0) return { kind: 'success', images };
  const worst = mergeFailures(failures, outcomes.length);
  return images.length > 0 ? { kind: 'success', images, shortfall: worst } : worst;
}

function mergeFailures(failures: ProviderFailure[], requests: number): ProviderFailure {
  const sorted = [...failures].sort((a, b) => RANK[a.kind] - RANK[b.kind]);
  const first = sorted[0]!;
  const message = `${failures.length} of ${requests} requests failed; ${first.message}`;
  if (first.kind === 'rate_limited') {
    const limited = failures.filter((f) => f.kind === 'rate_limited');
    const retryAfterMs = Math.max(-1, ...limited.map((f) => f.retryAfterMs ?? -1));
    const rest = limited.find((f) => f.rest)?.rest;
    return {
      kind: 'rate_limited',
      message,
      ...(retryAfterMs >= 0 ? { retryAfterMs } : {}),
      ...(rest ? { rest } : {}),
    };
  }
  return { ...first, message };
}
