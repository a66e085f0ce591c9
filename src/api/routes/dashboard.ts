import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** The dashboard's own files: plain ES modules and CSS, no build step. */
export const WEB_DIR = fileURLToPath(new URL('../../../web/', import.meta.url));
/** uPlot's ESM build and stylesheet, served from node_modules (no CDN). */
const UPLOT_DIR = path.dirname(createRequire(import.meta.url).resolve('uplot'));

// Images may come from object storage on another origin (signed S3/R2 links), hence img-src *.
const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  'img-src * data: blob:',
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'self'",
].join('; ');

/**
 * The operators' dashboard: the page at `/`, its files under `/ui/`, uPlot under
 * `/ui/vendor/uplot/`. Every route is `public` (static files only); every number on the page
 * comes from the admin API, called by the page with the admin key the operator typed in.
 */
export async function registerDashboardRoutes(app: FastifyInstance): Promise<void> {
  await app.register(async (scoped) => {
    scoped.addHook('onRoute', (route) => {
      route.config = { ...(route.config as object | undefined), scope: 'public' };
    });
    const setHeaders = (reply: FastifyReply) => {
      reply.header('content-security-policy', CSP);
      reply.header('x-content-type-options', 'nosniff');
      reply.header('referrer-policy', 'no-referrer');
      reply.header('cache-control', 'no-cache');
    };
    // A missing file under either prefix falls through to the API's JSON 404.
    await scoped.register(fastifyStatic, { root: WEB_DIR, prefix: '/ui/', index: false, setHeaders });
    await scoped.register(fastifyStatic, {
      root: UPLOT_DIR,
      prefix: '/ui/vendor/uplot/',
      index: false,
      decorateReply: false,
      allowedPath: (p) => p === '/uPlot.esm.js' || p === '/uPlot.min.css',
      setHeaders,
    });
    scoped.get('/', (_request, reply) => {
      setHeaders(reply);
      return reply.sendFile('index.html', WEB_DIR);
    });
  });
}
