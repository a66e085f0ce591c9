import { viewOf, type TaskView } from '../api/views.ts';
import type { Context } from '../context.ts';
import { getTaskView, type TaskRow } from '../store/tasks.ts';

/**
 * The task view a webhook carries, as `GET /v1/tasks/:id` shows it (its forecast row included).
 * Links are absolute on `server.publicUrl`; without one they point at this server's port on
 * localhost.
 */
export async function webhookTaskView(ctx: Context, task: TaskRow): Promise<TaskView> {
  const origin = { protocol: 'http' as const, host: `localhost:${ctx.config.server.port}` };
  return viewOf(ctx, origin, (await getTaskView(ctx.db, task.id)) ?? { ...task, ...NO_FORECAST });
}

const NO_FORECAST = {
  fc_position: null,
  fc_start_at: null,
  fc_finish_at: null,
  fc_basis: null,
  fc_forecast_at: null,
  fc_checked_at: null,
  now_ms: 0,
};
