import { v7 as uuidv7 } from 'uuid';
import type { ResolvedPipeline, ResolvedStep } from '../config/load.ts';
import type { NewJob } from '../store/jobs.ts';

/**
 * How a task fans out into jobs, step by step (pure):
 * - transform step: `calls` jobs, each one provider call whose outputs replace the inputs;
 * - generate step: ceil(images / batchSize) jobs, batch i covering images [i·B, min(N, (i+1)·B));
 * - store step: one job per generated image, created as soon as its batch succeeds.
 */

export interface TaskRef {
  id: string;
  userId: string;
  imagesTotal: number;
}

export function storeResource(pipeline: ResolvedPipeline, step: ResolvedStep): string {
  return `store:${pipeline.name}.${step.name}`;
}

function attemptsFor(step: ResolvedStep, defaultMaxAttempts: number): number {
  return step.maxAttempts > 0 ? step.maxAttempts : defaultMaxAttempts;
}

/** Jobs of a transform or generate step; `inputKeys` are the staged outputs of the step before. */
export function jobsForCallStep(
  task: TaskRef,
  step: ResolvedStep,
  inputKeys: string[],
  defaultMaxAttempts: number,
): NewJob[] {
  const base = {
    taskId: task.id,
    userId: task.userId,
    stepIndex: step.index,
    stepName: step.name,
    kind: step.kind,
    resource: step.provider!,
    maxAttempts: attemptsFor(step, defaultMaxAttempts),
    input: { keys: inputKeys },
  };
  if (step.kind === 'transform') {
    return Array.from({ length: step.calls }, (_, i) => ({ ...base, id: uuidv7(), firstIndex: i, count: 1 }));
  }
  const jobs: NewJob[] = [];
  for (let first = 0; first < task.imagesTotal; first += step.batchSize) {
    jobs.push({
      ...base,
      id: uuidv7(),
      firstIndex: first,
      count: Math.min(step.batchSize, task.imagesTotal - first),
    });
  }
  return jobs;
}

/** One store job per generated image: `stagedKeys[i]` holds image `firstIndex + i`. */
export function jobsForStoreStep(
  task: TaskRef,
  pipeline: ResolvedPipeline,
  step: ResolvedStep,
  firstIndex: number,
  stagedKeys: string[],
  defaultMaxAttempts: number,
  cached = false,
): NewJob[] {
  return stagedKeys.map((key, i) => ({
    id: uuidv7(),
    taskId: task.id,
    userId: task.userId,
    stepIndex: step.index,
    stepName: step.name,
    kind: 'store' as const,
    resource: storeResource(pipeline, step),
    firstIndex: firstIndex + i,
    count: 1,
    maxAttempts: attemptsFor(step, defaultMaxAttempts),
    input: cached ? { keys: [key], cached: true } : { keys: [key] },
  }));
}

export function stagedKey(taskId: string, stepName: string, index: number, ext: string): string {
  return `work/${taskId}/${stepName}/${String(index).padStart(4, '0')}.${ext}`;
}

export function resultKeys(
  taskId: string,
  index: number,
  ext: string,
): { original: string; thumbnail: string } {
  const name = String(index).padStart(4, '0');
  return { original: `tasks/${taskId}/${name}.${ext}`, thumbnail: `tasks/${taskId}/${name}.thumb.webp` };
}

export function extensionFor(mime: string): string {
  if (mime === 'image/jpeg') return 'jpg';
  if (mime === 'image/webp') return 'webp';
  if (mime === 'image/gif') return 'gif';
  if (mime === 'image/svg+xml') return 'svg';
  return 'png';
}
