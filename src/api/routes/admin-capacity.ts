import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Context } from '../../context.ts';
import { AppError } from '../../errors.ts';
import { SETTINGS } from '../../sim/settings.ts';
import {
  capacityRunSchema,
  MAX_TASKS,
  MAX_VALUES,
  prepareJob,
  shippedProblem,
  shippedScenarios,
} from '../../capacity/request.ts';
import { createCapacityRunner, type CapacityRunner, type RunnerOptions } from '../../capacity/runs.ts';
import { parseBody } from '../validation.ts';
import { ADMIN_ONLY } from './admin-stats.ts';

export { capacityRunSchema };

const runIdSchema = z.string().regex(/^cap_[0-9a-f-]{36}$/, 'a capacity run id (cap_…)');

/**
 * The planner from the dashboard: `POST /v1/admin/capacity/runs` starts a sweep against this
 * server's configuration on a worker thread and answers 202 at once; the page polls
 * `GET /v1/admin/capacity/runs/:id` for rows as each value's run ends. Admin keys only.
 */
export function registerAdminCapacityRoutes(
  app: FastifyInstance,
  ctx: Context,
  options: RunnerOptions = {},
): CapacityRunner {
  const runner = createCapacityRunner(options);
  app.addHook('onClose', () => runner.close());

  app.get('/v1/admin/capacity/scenarios', ADMIN_ONLY, async () => ({
    scenarios: [...(await shippedScenarios()).values()].map((s) => ({
      ...s.info,
      problem: shippedProblem(ctx.config, s.raw),
    })),
    settings: SETTINGS,
    providers: Object.keys(ctx.config.providers),
    limits: { max_values: MAX_VALUES, max_tasks: MAX_TASKS },
  }));

  app.post('/v1/admin/capacity/runs', ADMIN_ONLY, async (request, reply) => {
    const body = parseBody(capacityRunSchema, request.body);
    const job = await prepareJob(ctx.config, body);
    return reply.status(202).send(runner.start(job));
  });

  app.get('/v1/admin/capacity/runs', ADMIN_ONLY, async () => ({
    runs: runner.list().map(({ rows: _rows, ...summary }) => summary),
  }));

  app.get(
    '/v1/admin/capacity/runs/:id',
    ADMIN_ONLY,
    async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const id = parseBody(runIdSchema, request.params.id, 'id');
      const run = runner.get(id);
      if (!run) throw new AppError('not_found', `no capacity run "${id}" on this server process`);
      return run;
    },
  );
  return runner;
}
