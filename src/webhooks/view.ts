import { viewOf, type TaskView } from '../api/views.ts';
import type { Context } from '../context.ts';
import type { TaskRow } from '../store/tasks.ts';

/**
 * The task view a webhook carries, as `GET /v1/tasks/:id` shows it. Links are absolute on
 * `server.publicUrl`; without one they point at this server's port on localhost.
 */
export async function webhookTaskView(ctx: Context, task: TaskRow): Promise<TaskView> {
  const origin = { protocol: 'http' as const, host: `localhost:${ctx.config.server.port}` };
  return viewOf(ctx, origin, task);
}
