import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { z } from 'zod';
import type { Context } from '../context.ts';
import { ErrorCodes } from '../errors.ts';
import { scope, type RouteScope } from './auth/scope.ts';
import { alertsQuerySchema } from './routes/admin-alerts.ts';
import { eventsQuerySchema } from './routes/admin-tasks.ts';
import { capacityRunSchema } from './routes/admin-capacity.ts';
import { retrySchema } from './routes/admin-tasks.ts';
import { deliveriesQuerySchema } from './routes/admin-webhooks.ts';
import { listSchema, submitSchema } from './routes/tasks.ts';

/**
 * The OpenAPI 3.1 document of the API, built from the app itself: every route Fastify
 * registers (method, path, the scope it declares) and, where a route validates its input with
 * zod, that same schema converted to JSON Schema 2020-12 (OpenAPI 3.1's dialect). What the
 * routes validate and what the document says come from one place.
 */

interface RouteInput {
  body?: z.ZodType;
  /** The body may be left out (default: required). */
  bodyOptional?: boolean;
  query?: z.ZodType;
  summary: string;
  /** Status of success (default 200). */
  status?: number;
}

/** Per "METHOD path": the zod schemas the handler parses, and a summary. */
const INPUTS: Record<string, RouteInput> = {
  'POST /v1/tasks': { body: submitSchema, summary: 'Submit a task', status: 202 },
  'GET /v1/tasks': { query: listSchema, summary: 'List tasks, newest first' },
  'GET /v1/tasks/:id': { summary: 'Read a task' },
  'POST /v1/tasks/:id/cancel': { summary: 'Cancel a task' },
  'GET /v1/tasks/:id/events': { summary: 'Follow a task (Server-Sent Events)' },
  'POST /v1/uploads': { summary: 'Upload an input image (multipart)', status: 201 },
  'GET /v1/admin/stats': { summary: 'Queue and outcome statistics' },
  'GET /v1/admin/stats/series': {
    summary: 'Queue wait, completion time and throughput per minute, last hour',
  },
  'GET /v1/admin/stream': { summary: 'Stats and series as they change (Server-Sent Events)' },
  'GET /v1/admin/providers': { summary: 'Providers and keys now' },
  'POST /v1/admin/tasks/:id/retry': {
    body: retrySchema,
    bodyOptional: true,
    summary: 'Run a failed or partial task’s undelivered images again, charging only those',
    status: 202,
  },
  'GET /v1/admin/webhooks/deliveries': { query: deliveriesQuerySchema, summary: 'Task webhook deliveries' },
  'GET /v1/admin/alerts': { query: alertsQuerySchema, summary: 'Alerts firing and their history' },
  'GET /v1/admin/tasks/:id/events': { query: eventsQuerySchema, summary: "A task's event history" },
  'GET /v1/admin/capacity/scenarios': { summary: 'Shipped planner scenarios and sweepable settings' },
  'POST /v1/admin/capacity/runs': {
    body: capacityRunSchema,
    summary: 'Start a capacity run: the planner swept over a setting of the live configuration',
    status: 202,
  },
  'GET /v1/admin/capacity/runs': { summary: 'Capacity runs of this process, newest first' },
  'GET /v1/admin/capacity/runs/:id': {
    summary: 'A capacity run: progress, rows as they land, the recommendation',
  },
  'GET /metrics': { summary: 'Prometheus metrics (text format)' },
  'GET /healthz': { summary: 'Liveness' },
  'GET /readyz': { summary: 'Readiness' },
};

export interface CollectedRoute {
  method: string;
  url: string;
  scope: RouteScope;
}

/** Call before any route is registered: records every route as Fastify adds it. */
export function collectRoutes(app: FastifyInstance): CollectedRoute[] {
  const routes: CollectedRoute[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const declared = (r.config as { scope?: RouteScope } | undefined)?.scope ?? 'admin';
    for (const method of methods) {
      if (method === 'HEAD') continue;
      routes.push({ method, url: r.url ?? '', scope: declared });
    }
  });
  return routes;
}

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io: 'input',
    unrepresentable: 'any',
  }) as Record<string, unknown>;
  return rest;
}

/** `/v1/tasks/:id` → `/v1/tasks/{id}`; `/v1/files/*` → `/v1/files/{path}`. */
function openApiPath(url: string): { path: string; params: string[] } {
  const params: string[] = [];
  const p = url
    .split('/')
    .map((seg) => {
      if (seg.startsWith(':')) {
        params.push(seg.slice(1));
        return `{${seg.slice(1)}}`;
      }
      if (seg === '*') {
        params.push('path');
        return '{path}';
      }
      return seg;
    })
    .join('/');
  return { path: p, params };
}

function queryParameters(schema: z.ZodType): Array<Record<string, unknown>> {
  const s = jsonSchema(schema) as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, prop]) => ({
    name,
    in: 'query',
    required: (s.required ?? []).includes(name),
    schema: prop,
  }));
}

export function buildOpenApiDocument(
  ctx: Pick<Context, 'config'>,
  routes: CollectedRoute[],
): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    if (r.url.startsWith('/docs') || r.url === '/openapi.json') continue;
    const { path: p, params } = openApiPath(r.url);
    const input = INPUTS[`${r.method} ${r.url}`];
    const status = String(input?.status ?? 200);
    const operation: Record<string, unknown> = {
      operationId: `${r.method.toLowerCase()}${p.replace(/[{}]/g, '').replace(/[^a-zA-Z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      summary: input?.summary ?? `${r.method} ${r.url}`,
      'x-darkroom-scope': r.scope,
      ...(r.scope === 'public' ? { security: [] } : {}),
      parameters: [
        ...params.map((name) => ({ name, in: 'path', required: true, schema: { type: 'string' } })),
        ...(input?.query ? queryParameters(input.query) : []),
      ],
      ...(input?.body
        ? {
            requestBody: {
              required: !input.bodyOptional,
              content: { 'application/json': { schema: jsonSchema(input.body) } },
            },
          }
        : {}),
      responses: {
        [status]: { description: 'Success; see docs/api.md for the body' },
        default: {
          description: 'An error: `{ error: { code, message } }` (codes in docs/errors.md)',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
        },
      },
    };
    (paths[p] ??= {})[r.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'darkroom',
      version: '0.1.0',
      description: 'Self-hosted task server for AI image generation. Reference: docs/api.md.',
    },
    ...(ctx.config.server.publicUrl ? { servers: [{ url: ctx.config.server.publicUrl }] } : {}),
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description: 'An API key (`drk_…`, app or admin scope) or a user token',
        },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string', enum: Object.keys(ErrorCodes) },
                message: { type: 'string' },
              },
            },
          },
        },
      },
    },
  };
}

// swagger-ui-dist ships no type declarations; this is the one function used. Its own file: the
// package's main module also evaluates the 1.4 MB UI bundle meant for the browser, 42 MB of the
// server's resident memory for nothing (measured: require('swagger-ui-dist') in a bare node).
const getAbsoluteFSPath = createRequire(import.meta.url)('swagger-ui-dist/absolute-path.js') as () => string;

/** Files of swagger-ui-dist served under /docs/assets: the page loads nothing from elsewhere. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
};

const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>darkroom API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

const DOCS_INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true });\n`;

export function registerOpenApiRoutes(app: FastifyInstance, ctx: Context, routes: CollectedRoute[]): void {
  let doc: Record<string, unknown> | undefined;
  app.get('/openapi.json', scope('public'), async () => (doc ??= buildOpenApiDocument(ctx, routes)));
  app.get('/docs', scope('public'), async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(DOCS_HTML),
  );
  app.get('/docs/init.js', scope('public'), async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').send(DOCS_INIT),
  );
  app.get('/docs/assets/:file', scope('public'), async (request, reply) => {
    const file = (request.params as { file: string }).file;
    const type = ASSETS[file];
    if (!type) return reply.status(404).send({ error: { code: 'not_found', message: `no asset ${file}` } });
    const body = await readFile(path.join(getAbsoluteFSPath(), file));
    return reply.type(type).header('cache-control', 'public, max-age=86400').send(body);
  });
}
