import { keyIsUsable, type Config, type ResolvedPipeline } from '../config/load.ts';
import { estimateEtaSeconds, type ProviderThroughput, type TaskWork } from '../policy/estimate.ts';
import type { Queryable } from '../store/db.ts';
import { providerStates } from '../store/provider-state.ts';
import { meanJobMs, workAhead } from '../store/stats.ts';
import type { TaskRow } from '../store/tasks.ts';
import { storeResource } from './plan-jobs.ts';

export interface TaskEstimate {
  /** Queued tasks ahead of this one (0: next to start, or already running). */
  position: number;
  /** Seconds until the task is expected to finish; null once it has. */
  eta_seconds: number | null;
}

const DEFAULT_CALL_MS = 8000; // the source documents' measured batch latency
const DEFAULT_STORE_MS = 500;

/** Provider calls a task of this pipeline makes from a stage on (fan-out not yet created). */
function callsFromStage(pipeline: ResolvedPipeline, stage: string | null, images: number): { calls: number; serial: number } {
  const from = Math.max(0, pipeline.steps.findIndex((s) => s.name === stage));
  let calls = 0;
  let serial = 0;
  for (const step of pipeline.steps.slice(from)) {
    if (step.kind === 'transform') {
      calls += step.calls;
      serial += 1;
    } else if (step.kind === 'generate') calls += Math.ceil(images / step.batchSize);
  }
  return { calls, serial };
}

async function throughputOf(q: Queryable, config: Config, providerName: string): Promise<ProviderThroughput> {
  const provider = config.providers[providerName]!;
  const usable = provider.keys.filter((k) => keyIsUsable(provider, k));
  const state = (await providerStates(q)).find((s) => s.provider === providerName && s.key_id === '');
  const effective = Math.min(provider.concurrency, state?.effective_concurrency ?? provider.concurrency);
  const measured = await meanJobMs(q, providerName, 'call');
  const fallback = provider.type === 'sim' ? provider.sim.latencyMs : DEFAULT_CALL_MS;
  return {
    concurrency: Math.max(1, Math.min(effective, usable.reduce((n, k) => n + k.concurrency, 0))),
    rpm: Math.max(1, usable.reduce((n, k) => n + k.rpm, 0)),
    meanCallMs: measured ?? fallback,
  };
}

export async function estimateTask(q: Queryable, config: Config, task: TaskRow): Promise<TaskEstimate> {
  if (task.state !== 'queued' && task.state !== 'running') return { position: 0, eta_seconds: null };
  const pipeline = config.pipelines[task.type];
  const generate = pipeline?.steps.find((s) => s.kind === 'generate');
  if (!pipeline || !generate?.provider || !config.providers[generate.provider]) return { position: 0, eta_seconds: null };
  const ahead = await workAhead(q, task);
  const throughput = await throughputOf(q, config, generate.provider);
  let aheadCalls = 0;
  for (const group of ahead.byStage) {
    const p = config.pipelines[group.type];
    if (!p) continue;
    // The calls still to make for the group's unfinished images, from its stage on.
    const perTask = callsFromStage(p, group.stage, Math.ceil(group.remaining / Math.max(1, group.tasks)));
    aheadCalls += perTask.calls * group.tasks;
  }
  const store = pipeline.steps.find((s) => s.kind === 'store');
  const remainingImages = task.images_total - task.images_done - task.images_failed;
  const own = callsFromStage(pipeline, task.stage, remainingImages);
  const work: TaskWork = {
    calls: own.calls,
    serialCalls: own.serial,
    storeUnits: remainingImages,
    storeConcurrency: store?.concurrency ?? 5,
    meanStoreMs: (store ? await meanJobMs(q, storeResource(pipeline, store), 'store') : undefined) ?? DEFAULT_STORE_MS,
  };
  return {
    position: task.state === 'queued' ? ahead.queuedTasksAhead : 0,
    eta_seconds: estimateEtaSeconds(aheadCalls, work, throughput),
  };
}
