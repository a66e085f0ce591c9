import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { AppError } from '../../errors.ts';
import { verifyFileSignature } from '../../storage/signing.ts';
import { scope } from '../auth/scope.ts';

const CONTENT_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  webp: 'image/webp',
  gif: 'image/gif',
  svg: 'image/svg+xml',
};

// An SVG result (OpenAI output_format svg) opened directly must not run anything on this origin.
const SVG_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox";

/** Serves local-storage files behind expiring HMAC-signed URLs. */
export function registerFileRoutes(app: FastifyInstance, ctx: Context, signingSecret: string): void {
  app.get(
    '/v1/files/*',
    // The signature in the link is the credential, so <img src> works without a header.
    scope('public'),
    async (
      request: FastifyRequest<{ Params: { '*': string }; Querystring: { exp?: string; sig?: string } }>,
      reply,
    ) => {
      const key = request.params['*'];
      const { exp, sig } = request.query;
      if (!exp || !sig || !verifyFileSignature(key, exp, sig, signingSecret, Math.floor(Date.now() / 1000))) {
        throw new AppError('forbidden', 'the file link is invalid or has expired');
      }
      const data = await ctx.storage.get(key);
      const ext = key.slice(key.lastIndexOf('.') + 1).toLowerCase();
      if (ext === 'svg') reply.header('content-security-policy', SVG_POLICY);
      return reply
        .header('content-type', CONTENT_TYPES[ext] ?? 'application/octet-stream')
        .header('cache-control', 'private, max-age=3600')
        .header('x-content-type-options', 'nosniff')
        .send(data);
    },
  );
}
