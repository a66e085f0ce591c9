import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Context } from '../../context.ts';
import { AppError } from '../../errors.ts';
import { storeUpload } from '../../pipeline/inputs.ts';

export function registerUploadRoutes(app: FastifyInstance, ctx: Context): void {
  /** multipart/form-data with one file field (any name): validated with sharp, normalised, stored. */
  app.post('/v1/uploads', async (request: FastifyRequest, reply) => {
    if (!request.isMultipart()) {
      throw new AppError('validation_failed', 'send the image as multipart/form-data with one file field');
    }
    const file = await request.file();
    if (!file) throw new AppError('validation_failed', 'the multipart body holds no file');
    const data = await file.toBuffer();
    const upload = await storeUpload(ctx, data);
    return reply.status(201).send({
      upload_id: upload.id,
      width: upload.width,
      height: upload.height,
      mime: upload.mime,
      bytes: upload.bytes,
    });
  });
}
