import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Gauge, type Registry } from 'prom-client';
import { AppError } from '../errors.ts';

/** How long a refused client is told to wait: a backlog of this API drains in seconds. */
const RETRY_AFTER_SECONDS = 1;

/** Health checks and metrics answer even when the process is busy: it is alive, only saturated. */
const UNCOUNTED = new Set(['/healthz', '/readyz', '/metrics']);
const GAUGE = 'darkroom_http_requests_in_flight';

const releases = new WeakMap<FastifyRequest, () => void>();

/**
 * Caps the requests one API process serves at once (`server.maxRequestsInFlight`); past it the
 * answer is 503 `server_busy` with Retry-After, before authentication or any database work.
 * Each request in flight holds memory until it is answered, and a server sent more requests a
 * second than it completes keeps them all: at 500 submits/s on a server that completed far fewer,
 * 9,800 requests were in flight and the process's RSS grew past 600 MB, most of it their
 * promoted garbage (docs/benchmarks.md, "Memory"). With the cap, memory is bounded by the
 * cap, not by how long the overload lasts. An event stream leaves the count once it starts
 * (`leaveInFlight`): `server.maxEventStreams` caps those.
 */
export function installInFlightLimit(app: FastifyInstance, max: number, registry?: Registry): void {
  let inFlight = 0;
  if (registry) {
    registry.removeSingleMetric(GAUGE);
    new Gauge({
      name: GAUGE,
      help: 'Requests this API process is answering (event streams, health checks and metrics not counted).',
      registers: [registry],
      collect() {
        this.set(inFlight);
      },
    });
  }
  app.addHook('onRequest', async (request, reply) => {
    if (UNCOUNTED.has(request.routeOptions.url ?? '')) return;
    if (inFlight >= max)
      throw new AppError(
        'server_busy',
        `this server is answering ${inFlight} requests already (server.maxRequestsInFlight ${max}); retry shortly`,
        { retryAfterSeconds: RETRY_AFTER_SECONDS },
      );
    inFlight += 1;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      inFlight -= 1;
      releases.delete(request);
    };
    releases.set(request, release);
    // 'close' follows both a finished response and a connection lost before it.
    reply.raw.once('close', release);
  });
}

/** Takes a long-lived request (an event stream) out of the in-flight count. */
export function leaveInFlight(request: FastifyRequest): void {
  releases.get(request)?.();
}
