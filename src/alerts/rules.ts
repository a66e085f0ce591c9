/**
 * The alert rules, as pure functions of a snapshot of the installation (no I/O, no clock:
 * the snapshot carries its own `nowMs`). Defaults are the source documents' thresholds:
 * queued > 50, provider error rate > 10 % over 5 minutes, a task running > 180 s,
 * 429 rate > 5 %, no live worker.
 */

export interface AlertRules {
  queued: { enabled: boolean; threshold: number };
  providerErrorRate: { enabled: boolean; threshold: number; windowSeconds: number; minCalls: number };
  rateLimitRate: { enabled: boolean; threshold: number; windowSeconds: number; minCalls: number };
  taskRunning: { enabled: boolean; thresholdSeconds: number };
  noLiveWorker: { enabled: boolean };
}

export interface ProviderWindow {
  provider: string;
  calls: number;
  /** Failures other than 429s. */
  errors: number;
  rateLimited: number;
}

export interface AlertSnapshot {
  nowMs: number;
  queued: number;
  /** The running task that started first, if any. */
  longestRunning: { taskId: string; startedMs: number } | undefined;
  /** Provider calls that ended within the error-rate rule's window, per provider. */
  errorWindow: ProviderWindow[];
  /** The same within the 429-rate rule's window. */
  rateLimitWindow: ProviderWindow[];
  liveWorkers: number;
}

export interface AlertCondition {
  rule: keyof AlertRules;
  /** The subject: a provider name, or '' for installation-wide rules. */
  key: string;
  value: number;
  threshold: number;
  summary: string;
}

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

/** Every condition that holds now; an alert fires for each, and resolves when it stops holding. */
export function evaluateRules(rules: AlertRules, s: AlertSnapshot): AlertCondition[] {
  const out: AlertCondition[] = [];
  if (rules.queued.enabled && s.queued > rules.queued.threshold) {
    out.push({
      rule: 'queued',
      key: '',
      value: s.queued,
      threshold: rules.queued.threshold,
      summary: `${s.queued} tasks queued (alert above ${rules.queued.threshold})`,
    });
  }
  const e = rules.providerErrorRate;
  for (const p of e.enabled ? s.errorWindow : []) {
    if (p.calls >= e.minCalls && p.errors / p.calls > e.threshold) {
      out.push({
        rule: 'providerErrorRate',
        key: p.provider,
        value: p.errors / p.calls,
        threshold: e.threshold,
        summary: `provider ${p.provider}: ${pct(p.errors / p.calls)} of ${p.calls} calls failed in the last ${e.windowSeconds} s (alert above ${pct(e.threshold)})`,
      });
    }
  }
  const r = rules.rateLimitRate;
  for (const p of r.enabled ? s.rateLimitWindow : []) {
    if (p.calls >= r.minCalls && p.rateLimited / p.calls > r.threshold) {
      out.push({
        rule: 'rateLimitRate',
        key: p.provider,
        value: p.rateLimited / p.calls,
        threshold: r.threshold,
        summary: `provider ${p.provider}: ${pct(p.rateLimited / p.calls)} of ${p.calls} calls answered 429 in the last ${r.windowSeconds} s (alert above ${pct(r.threshold)})`,
      });
    }
  }
  if (rules.taskRunning.enabled && s.longestRunning) {
    const seconds = (s.nowMs - s.longestRunning.startedMs) / 1000;
    if (seconds > rules.taskRunning.thresholdSeconds) {
      out.push({
        rule: 'taskRunning',
        key: '',
        value: Math.round(seconds),
        threshold: rules.taskRunning.thresholdSeconds,
        summary: `task ${s.longestRunning.taskId} has been running for ${Math.round(seconds)} s (alert above ${rules.taskRunning.thresholdSeconds} s)`,
      });
    }
  }
  if (rules.noLiveWorker.enabled && s.liveWorkers === 0) {
    out.push({
      rule: 'noLiveWorker',
      key: '',
      value: 0,
      threshold: 0,
      summary: 'no worker process is alive',
    });
  }
  return out;
}
