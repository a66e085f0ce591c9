import type { KeyView } from './types.ts';

/** Requests of this key that count against its RPM at `nowMs`. */
export function requestsInWindow(key: KeyView, nowMs: number, windowMs: number): number {
  let n = 0;
  // Same arithmetic as keyAvailableAtMs (t + window), so "available at" and "in the window" agree.
  for (const t of key.recentStartsMs) if (t + windowMs > nowMs) n++;
  // Not-started requests carry their admission time and always count; callers keep them in the list.
  return n;
}

/**
 * When this key could next start `requests` requests at once, or `nowMs` if it can now. Infinity
 * when unusable or when `requests` exceeds its rpm (it never could).
 */
export function keyAvailableAtMs(key: KeyView, nowMs: number, windowMs: number, requests = 1): number {
  if (!key.usable || requests > key.rpm) return Number.POSITIVE_INFINITY;
  let at = Math.max(nowMs, key.cooldownUntilMs);
  const times = key.recentStartsMs;
  if (times.length + requests > key.rpm) {
    // The (rpm - requests + 1)-th newest request must leave the window first.
    const blocking = times[times.length - key.rpm + requests - 1];
    if (blocking !== undefined) at = Math.max(at, blocking + windowMs);
  }
  return at;
}

export function keyCanStartNow(key: KeyView, nowMs: number, windowMs: number, requests = 1): boolean {
  return (
    key.usable &&
    key.inFlight + requests <= key.concurrency &&
    key.cooldownUntilMs <= nowMs &&
    requestsInWindow(key, nowMs, windowMs) + requests <= key.rpm
  );
}

/**
 * The key pool rule: of the keys that can start `requests` requests now, the one with the most
 * RPM headroom, then the fewest requests in flight, then the lowest id (deterministic). Never random.
 */
export function chooseKey(
  keys: KeyView[],
  nowMs: number,
  windowMs: number,
  requests = 1,
): KeyView | undefined {
  let best: KeyView | undefined;
  let bestHeadroom = -1;
  for (const key of keys) {
    if (!keyCanStartNow(key, nowMs, windowMs, requests)) continue;
    const headroom = key.rpm - requestsInWindow(key, nowMs, windowMs);
    if (
      !best ||
      headroom > bestHeadroom ||
      (headroom === bestHeadroom &&
        (key.inFlight < best.inFlight || (key.inFlight === best.inFlight && key.id < best.id)))
    ) {
      best = key;
      bestHeadroom = headroom;
    }
  }
  return best;
}

/** Records `requests` request starts on a key (mutates the view: used inside one decision). */
export function recordStart(key: KeyView, nowMs: number, requests = 1): void {
  key.inFlight += requests;
  for (let i = 0; i < requests; i++) key.recentStartsMs.push(nowMs);
}
