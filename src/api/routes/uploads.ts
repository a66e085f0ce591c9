import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { AppError, coerceError } from '../../errors.ts';
import { storeUpload } from '../../pipeline/inputs.ts';
import { getUploads } from '../../store/uploads.ts';
import { scope } from '../auth/scope.ts';
import { callerOf, ownUserOf } from '../caller.ts';

/**
 * The bytes of the one file part. A body busboy cannot parse (no or wrong boundary, cut short,
 * malformed part headers) is the caller's fault: 400 `malformed_multipart`, not a 500.
 */
async function readFilePart(request: FastifyRequest): Promise<Buffer> {
  try {
    const file = await request.file();
    if (!file) throw new AppError('validation_failed', 'the multipart body holds no file');
    return await file.toBuffer();
  } catch (error) {
    if (error instanceof AppError || typeof (error as { code?: unknown }).code === 'string') throw error;
    throw new AppError(
      'malformed_multipart',
      `the multipart body cannot be read: ${coerceError(error).message}`,
      {
        cause: error,
      },
    );
  }
}

export function registerUploadRoutes(app: FastifyInstance, ctx: Context): void {
  /** multipart/form-data with one file field (any name): validated with sharp, normalised, stored. */
  app.post('/v1/uploads', scope('user'), async (request: FastifyRequest, reply) => {
    const owner = ownUserOf(callerOf(request));
    if (!request.isMultipart()) {
      throw new AppError('validation_failed', 'send the image as multipart/form-data with one file field');
    }
    const data = await readFilePart(request);
    const upload = await storeUpload(ctx, data, owner);
    return reply.status(201).send({
      upload_id: upload.id,
      width: upload.width,
      height: upload.height,
      mime: upload.mime,
      bytes: upload.bytes,
    });
  });

  /** An upload's metadata. A user token sees only its own uploads; another's is a 404. */
  app.get('/v1/uploads/:id', scope('user'), async (request: FastifyRequest<{ Params: { id: string } }>) => {
    const owner = ownUserOf(callerOf(request));
    const [upload] = await getUploads(ctx.db, [request.params.id]);
    if (!upload || (owner !== undefined && upload.user_id !== owner)) {
      throw new AppError('upload_not_found', `upload "${request.params.id}" does not exist (or has expired)`);
    }
    return {
      upload_id: upload.id,
      width: upload.width,
      height: upload.height,
      mime: upload.mime,
      bytes: upload.bytes,
      created_at: upload.created_at.toISOString(),
    };
  });
}
