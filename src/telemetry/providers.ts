import type { Config } from '../config/load.ts';
import type { Queryable } from '../store/db.ts';
import { jobsInFlight, keyRequestsInWindow } from '../store/admin-stats.ts';
import { callsInWindow, lastKeyErrors } from '../store/provider-calls.ts';
import { providerStates } from '../store/provider-state.ts';

const MINUTE_MS = 60_000;

export interface KeyView {
  id: string;
  rpm: number;
  concurrency: number;
  disabled: boolean;
  /** Requests started or reserved within the last 60 s (the window the RPM limit is held to). */
  requests_last_minute: number;
  /** Calls that ended within the last 60 s, and how many of them were 429s or other failures. */
  calls_last_minute: number;
  rate_limited_last_minute: number;
  errors_last_minute: number;
  in_flight: { admitted: number; running: number };
  /** Set after a 429: the scheduler gives this key no work before then. */
  cooldown_until: string | null;
  /** Set when the provider's daily quota is spent (when the adapter reports one). */
  rest_until: string | null;
  /** Why the key rests (a per-day quota, repeated 429s without a hint); null when it does not. */
  rest_reason: string | null;
  rate_limited_total: number;
  last_error: { outcome: string; message: string; at: string } | null;
}

export interface ProviderView {
  name: string;
  type: string;
  /** The configured cap on calls in flight across the provider's keys. */
  concurrency: number;
  /** The cap after AIMD adaptation to 429s. */
  effective_concurrency: number;
  in_flight: { admitted: number; running: number };
  requests_last_minute: number;
  calls_last_minute: number;
  rate_limited_last_minute: number;
  errors_last_minute: number;
  keys: KeyView[];
}

function iso(d: Date | null | undefined, now: number): string | null {
  return d && d.getTime() > now ? d.toISOString() : null;
}

/** Everything `GET /v1/admin/providers` answers; each read is bounded by capacity or the last minute. */
export async function collectProviders(q: Queryable, config: Config): Promise<ProviderView[]> {
  const [requests, calls, inFlight, states, errors] = await Promise.all([
    keyRequestsInWindow(q, MINUTE_MS),
    callsInWindow(q, MINUTE_MS),
    jobsInFlight(q),
    providerStates(q),
    lastKeyErrors(q),
  ]);
  const now = Date.now();
  const find = <T extends { provider: string; key_id: string }>(rows: T[], p: string, k: string) =>
    rows.find((r) => r.provider === p && r.key_id === k);
  return Object.values(config.providers).map((p) => {
    const keys: KeyView[] = p.keys.map((k) => {
      const call = find(calls, p.name, k.id);
      const state = find(states, p.name, k.id);
      const error = find(errors, p.name, k.id);
      const flight = inFlight.filter((f) => f.resource === p.name && f.key_id === k.id);
      return {
        id: k.id,
        rpm: k.rpm,
        concurrency: k.concurrency,
        disabled: k.disabled,
        requests_last_minute: find(requests, p.name, k.id)?.requests ?? 0,
        calls_last_minute: call?.calls ?? 0,
        rate_limited_last_minute: call?.rate_limited ?? 0,
        errors_last_minute: call?.errors ?? 0,
        in_flight: {
          admitted: flight.reduce((n, f) => n + f.admitted, 0),
          running: flight.reduce((n, f) => n + f.running, 0),
        },
        cooldown_until: iso(state?.cooldown_until, now),
        rest_until: iso(state?.rest_until, now),
        rest_reason: iso(state?.rest_until, now) ? (state?.cooldown_reason ?? null) : null,
        rate_limited_total: state?.rate_limited_total ?? 0,
        last_error: error
          ? { outcome: error.outcome, message: error.message, at: error.at.toISOString() }
          : null,
      };
    });
    const providerRow = find(states, p.name, '');
    const sum = (f: (k: KeyView) => number) => keys.reduce((n, k) => n + f(k), 0);
    return {
      name: p.name,
      type: p.type,
      concurrency: p.concurrency,
      effective_concurrency: Math.min(p.concurrency, providerRow?.effective_concurrency ?? p.concurrency),
      in_flight: { admitted: sum((k) => k.in_flight.admitted), running: sum((k) => k.in_flight.running) },
      requests_last_minute: sum((k) => k.requests_last_minute),
      calls_last_minute: sum((k) => k.calls_last_minute),
      rate_limited_last_minute: sum((k) => k.rate_limited_last_minute),
      errors_last_minute: sum((k) => k.errors_last_minute),
      keys,
    };
  });
}
