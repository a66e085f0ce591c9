import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { createRequire } from 'node:module';
import { compactCounters } from '../../src/store/counters.ts';
import type { ProviderView } from '../../src/telemetry/providers.ts';
import type { StatsView } from '../../src/telemetry/stats.ts';
import { describeEachDb } from '../helpers/db.ts';
import { getJson, postJson, useTestServer } from '../helpers/server.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * A run with known counts, then the admin views and /metrics checked against it. Expected:
 *   3 free tasks succeed (2 images each; calls: beautify 1 + generate 1 each)
 *   1 free task fails at beautify (permanent)                        → failed, 2 credits refunded
 *   1 start task (30 images) loses the batch holding index 7 (5 images) → partial, 5 refunded
 *   1 free task hits a 429 and is canceled while it waits             → canceled, 2 refunded
 * Provider calls: 3·2 + 1 + (1 + 5) successes = 12, 2 permanent, 1 rate limited.
 */

interface PromFamily {
  name: string;
  type: string;
  metrics: Array<{
    value?: string;
    labels?: Record<string, string>;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }>;
}

/**
 * parse-prometheus-text-format folds the buckets of every label set of a histogram into one
 * (and keeps _count/_sum only for unlabeled ones), so one label set is cut out of the text first.
 */
// The package ships no type declarations; the shape used is PromFamily below.
const parsePrometheusTextFormat = createRequire(import.meta.url)('parse-prometheus-text-format') as (
  text: string,
) => PromFamily[];

function buckets(text: string, name: string, label: string): Record<string, number> {
  const lines = text
    .split('\n')
    .filter(
      (l) =>
        l.startsWith(`# HELP ${name} `) ||
        l.startsWith(`# TYPE ${name} `) ||
        (l.startsWith(`${name}_bucket{`) && l.includes(label)),
    );
  const [family] = parsePrometheusTextFormat(lines.join('\n') + '\n');
  assert.equal(family?.type, 'HISTOGRAM');
  return Object.fromEntries(Object.entries(family.metrics[0]!.buckets!).map(([le, v]) => [le, Number(v)]));
}

function total(families: PromFamily[], name: string, match: Record<string, string> = {}): number {
  const family = families.find((f) => f.name === name);
  assert.ok(family, `series ${name} is exported`);
  return family.metrics
    .filter((m) => Object.entries(match).every(([k, v]) => m.labels?.[k] === v))
    .reduce((n, m) => n + Number(m.value ?? m.count), 0);
}

async function submit(base: string, body: Record<string, unknown>): Promise<string> {
  const res = await postJson(base, '/v1/tasks', { type: 'photography', ...body });
  assert.equal(res.status, 202, JSON.stringify(res.body));
  return res.body.id as string;
}

async function finalState(base: string, id: string): Promise<string> {
  return waitFor(`task ${id} to end`, async () => {
    const { body } = await getJson(base, `/v1/tasks/${id}`);
    return ['queued', 'running'].includes(body.state as string) ? undefined : (body.state as string);
  });
}

describeEachDb('admin stats, providers and metrics after a run with known counts', (kind) => {
  // Long leases: on a loaded machine a paused event loop must not expire one (the counts are exact).
  const t = useTestServer(kind, { worker: { leaseMs: 20_000 } });

  it('count every outcome exactly, in the admin API and in Prometheus format', async () => {
    const base = t.server.baseUrl;
    const ok = await Promise.all(['a', 'b', 'c'].map((u) => submit(base, { user_id: u, plan: 'free' })));
    const failed = await submit(base, { user_id: 'd', plan: 'free', prompt: 'x [sim:permanent]' });
    const partial = await submit(base, { user_id: 'e', plan: 'start', prompt: 'y [sim:fail-index=7]' });
    for (const id of ok) assert.equal(await finalState(base, id), 'succeeded');
    assert.equal(await finalState(base, failed), 'failed');
    assert.equal(await finalState(base, partial), 'partial');

    const limited = await submit(base, { user_id: 'f', plan: 'free', prompt: 'z [sim:rate-limited=600000]' });
    // The call log is written apart from (and may land before) the transaction that records the
    // 429 and halves the AIMD concurrency: wait for both.
    await waitFor('the 429 to be logged and recorded', async () => {
      const { body } = await getJson(base, '/v1/admin/providers');
      const p = (body.providers as ProviderView[])[0]!;
      return p.keys[0]!.rate_limited_last_minute === 1 && p.effective_concurrency !== 20;
    });
    const providers = (await getJson(base, '/v1/admin/providers')).body.providers as ProviderView[];
    assert.equal(providers.length, 1);
    const main = providers[0]!;
    assert.equal(main.name, 'main');
    assert.equal(main.concurrency, 20);
    assert.equal(main.effective_concurrency, 10, 'one 429 halves the AIMD concurrency (decrease factor 0.5)');
    const k1 = main.keys[0]!;
    assert.equal(k1.id, 'k1');
    await waitFor('every call to be logged', async () => {
      const { body } = await getJson(base, '/v1/admin/providers');
      return (body.providers as ProviderView[])[0]!.keys[0]!.calls_last_minute === 15;
    });
    const k1Now = ((await getJson(base, '/v1/admin/providers')).body.providers as ProviderView[])[0]!
      .keys[0]!;
    assert.equal(k1Now.errors_last_minute, 2);
    assert.equal(k1Now.requests_last_minute, 15, 'every call was admitted through the RPM log');
    assert.ok(
      Date.parse(k1Now.cooldown_until ?? '') > Date.now() + 500_000,
      'cooling down for the Retry-After',
    );
    assert.equal(k1Now.rate_limited_total, 1);
    assert.equal(k1Now.last_error?.outcome, 'rate_limited');
    assert.deepEqual(k1Now.in_flight, { admitted: 0, running: 0 });

    const cancel = await postJson(base, `/v1/tasks/${limited}/cancel`, {});
    assert.equal(cancel.status, 200);
    assert.equal(await finalState(base, limited), 'canceled');

    // Half the counters folded into totals, half still deltas: the sum is the same either way.
    await compactCounters(t.server.ctx.db);
    await submit(base, {
      user_id: 'g',
      plan: 'free',
      deadline_seconds: 1,
      prompt: '[sim:rate-limited=1]',
    }).then((id) => finalState(base, id));

    const stats = (await getJson(base, '/v1/admin/stats')).body as unknown as StatsView;
    assert.equal(stats.total_submitted, 7);
    assert.equal(stats.total_succeeded, 3);
    assert.equal(stats.total_partial, 1);
    assert.equal(stats.total_failed, 1);
    assert.equal(stats.total_canceled, 2);
    assert.equal(stats.queued, 0);
    assert.equal(stats.running, 0);
    assert.deepEqual(stats.by_plan.start, { queued: 0, running: 0, submitted: 1 });
    assert.equal(stats.by_plan.free?.submitted, 6);
    assert.deepEqual(stats.by_resource.main, { queued: 0, admitted: 0, running: 0 });
    assert.equal(stats.oldest_queued_age_seconds, null);
    assert.equal(stats.max_queued, 10_000);
    assert.equal(stats.workers.live, 1);
    assert.equal(stats.workers.slots, 16);
    assert.equal(stats.throughput['1m'].tasks, 7);
    assert.equal(stats.throughput['15m'].images, 3 * 2 + 25);
    assert.ok(Date.parse(stats.last_finished_at ?? '') <= Date.parse(stats.now));

    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const families = parsePrometheusTextFormat(text);
    for (const f of families) assert.match(f.name, /^darkroom_/);
    assert.equal(total(families, 'darkroom_tasks_submitted_total'), 7);
    assert.equal(total(families, 'darkroom_tasks_finished_total', { state: 'succeeded' }), 3);
    assert.equal(total(families, 'darkroom_tasks_finished_total', { state: 'canceled' }), 2);
    assert.equal(total(families, 'darkroom_tasks_finished_total', { state: 'partial', plan: 'start' }), 1);
    assert.equal(total(families, 'darkroom_queue_depth'), 0);
    assert.equal(total(families, 'darkroom_tasks_running'), 0);
    const freeDurations = buckets(text, 'darkroom_task_duration_seconds', 'plan="free"');
    assert.equal(freeDurations['+Inf'], 6, 'one duration per finished free task');
    assert.equal(buckets(text, 'darkroom_task_duration_seconds', 'plan="start"')['+Inf'], 1);
    const les = Object.keys(freeDurations)
      .filter((le) => le !== '+Inf')
      .map(Number);
    for (let i = 1; i < les.length; i++)
      assert.ok(
        freeDurations[String(les[i])]! >= freeDurations[String(les[i - 1])]!,
        'buckets are cumulative',
      );
    assert.equal(buckets(text, 'darkroom_task_queue_wait_seconds', 'plan="start"')['+Inf'], 1);
    assert.equal(total(families, 'darkroom_refunds_total'), 4);
    assert.equal(total(families, 'darkroom_refunded_credits_total'), 2 + 5 + 2 + 2);
    assert.equal(total(families, 'darkroom_charged_credits_total'), 6 * 2 + 30);
    // The last task never got a call: k1 was still cooling down from the first 429.
    assert.equal(total(families, 'darkroom_provider_rate_limited_total', { key: 'k1' }), 1);
    assert.equal(total(families, 'darkroom_provider_calls_total', { outcome: 'success' }), 12);
    assert.equal(total(families, 'darkroom_provider_calls_total', { outcome: 'permanent' }), 2);
    assert.equal(buckets(text, 'darkroom_provider_call_duration_seconds', 'outcome="success"')['+Inf'], 12);
    assert.equal(total(families, 'darkroom_workers_live'), 1);
    assert.equal(total(families, 'darkroom_provider_effective_concurrency', { provider: 'main' }), 10);
    const passes = families.find((f) => f.name === 'darkroom_scheduler_pass_duration_seconds')!;
    assert.ok(Number(passes.metrics[0]!.count) > 0, 'the leader timed its passes');
    assert.equal(total(families, 'darkroom_lease_expiries_total'), 0);

    // The shipped Grafana dashboard queries only series this scrape has.
    const dashboard = readFileSync(new URL('../../examples/grafana-darkroom.json', import.meta.url), 'utf8');
    const exported = new Set(families.map((f) => f.name));
    const used = new Set(
      [...dashboard.matchAll(/darkroom_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, '')),
    );
    for (const name of used) assert.ok(exported.has(name), `dashboard uses ${name}`);
  });
});
