import type { FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import { estimateOf, type TaskEstimate } from '../pipeline/estimate.ts';
import { imagesOfTask, type ImageRow } from '../store/images.ts';
import type { TaskRow, TaskViewRow } from '../store/tasks.ts';

export interface ImageView {
  index: number;
  url: string;
  thumbnail_url: string;
  width: number;
  height: number;
  /** True when the image came from the result cache (no provider call). */
  cached: boolean;
}

export interface TaskView extends TaskEstimate {
  id: string;
  user_id: string;
  order_id: string | null;
  type: string;
  plan: string;
  state: TaskRow['state'];
  stage: string | null;
  progress: { done: number; failed: number; total: number };
  images: ImageView[];
  error: string | null;
  /** Totals over every attempt. */
  credits_charged: number;
  credits_refunded: number;
  /** 1, or 2, 3, … once an administrator retried the task. */
  attempt: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

/** Where links point: a request's origin (webhooks, sent outside any request, make one up). */
export type RequestOrigin = Pick<FastifyRequest, 'protocol' | 'host'>;

/** Absolute base URL for links: the configured public URL, else the request's own origin. */
export function baseUrlOf(ctx: Context, request: RequestOrigin): string {
  if (ctx.config.server.publicUrl) return ctx.config.server.publicUrl.replace(/\/+$/, '');
  return `${request.protocol}://${request.host}`;
}

export async function absoluteUrl(ctx: Context, request: RequestOrigin, key: string): Promise<string> {
  const url = await ctx.storage.url(key, ctx.config.storage.urlExpirySeconds);
  return url.startsWith('/') ? `${baseUrlOf(ctx, request)}${url}` : url;
}

export async function taskView(
  ctx: Context,
  request: RequestOrigin,
  task: TaskViewRow,
  images: ImageRow[],
): Promise<TaskView> {
  return {
    id: task.id,
    user_id: task.user_id,
    order_id: task.order_id,
    type: task.type,
    plan: task.plan,
    state: task.state,
    stage: task.stage,
    progress: { done: task.images_done, failed: task.images_failed, total: task.images_total },
    ...estimateOf(task),
    images: await Promise.all(
      images.map(async (i) => ({
        index: i.index,
        url: await absoluteUrl(ctx, request, i.storage_key),
        thumbnail_url: await absoluteUrl(ctx, request, i.thumb_key),
        width: i.width,
        height: i.height,
        cached: i.cached,
      })),
    ),
    error: task.error,
    credits_charged: task.credits_charged,
    credits_refunded: task.credits_refunded,
    attempt: task.attempt,
    created_at: task.created_at.toISOString(),
    started_at: task.started_at?.toISOString() ?? null,
    finished_at: task.finished_at?.toISOString() ?? null,
  };
}

/** The task object of every response: the row with its forecast (getTaskView), and its stored images. */
export async function viewOf(ctx: Context, request: RequestOrigin, task: TaskViewRow): Promise<TaskView> {
  return taskView(ctx, request, task, await imagesOfTask(ctx.db, task.id));
}
