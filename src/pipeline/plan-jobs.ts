import { v7 as uuidv7 } from 'uuid';
import type { ResolvedPipeline, ResolvedStep } from '../config/load.ts';
import { callStepJobs, storeResource, type JobSpec } from '../policy/lifecycle.ts';
import type { NewJob } from '../store/jobs.ts';

/**
 * Job rows for the fan-out of src/policy/lifecycle.ts (which jobs a step has): each gets an id,
 * its resource and its input keys.
 */

export { storeResource };

export interface TaskRef {
  id: string;
  userId: string;
  imagesTotal: number;
}

/** Rows for a transform or generate step's jobs; `inputKeys` are the staged outputs of the step before. */
export function callJobRows(
  task: TaskRef,
  step: ResolvedStep,
  specs: JobSpec[],
  inputKeys: string[],
): NewJob[] {
  return specs.map((j) => ({
    id: uuidv7(),
    taskId: task.id,
    userId: task.userId,
    stepIndex: step.index,
    stepName: step.name,
    kind: step.kind,
    resource: step.provider!,
    firstIndex: j.firstIndex,
    count: j.count,
    maxAttempts: j.maxAttempts,
    input: { keys: inputKeys },
  }));
}

/** Jobs of a transform or generate step (all of them: the step's start). */
export function jobsForCallStep(
  task: TaskRef,
  step: ResolvedStep,
  inputKeys: string[],
  defaultMaxAttempts: number,
): NewJob[] {
  return callJobRows(task, step, callStepJobs(step, task.imagesTotal, defaultMaxAttempts), inputKeys);
}

/**
 * Rows for store jobs: `stagedKeys` hold the images the specs cover, in index order (the first
 * spec's first image first); each job carries the staged keys of its own images.
 */
export function storeJobRows(
  task: TaskRef,
  pipeline: ResolvedPipeline,
  step: ResolvedStep,
  specs: JobSpec[],
  stagedKeys: string[],
  cached: boolean,
): NewJob[] {
  const first = specs[0]?.firstIndex ?? 0;
  return specs.map((j) => {
    const keys = stagedKeys.slice(j.firstIndex - first, j.firstIndex - first + j.count);
    return {
      id: uuidv7(),
      taskId: task.id,
      userId: task.userId,
      stepIndex: step.index,
      stepName: step.name,
      kind: 'store' as const,
      resource: storeResource(pipeline, step),
      firstIndex: j.firstIndex,
      count: j.count,
      maxAttempts: j.maxAttempts,
      input: cached ? { keys, cached: true } : { keys },
    };
  });
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
