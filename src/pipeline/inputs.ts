import { v7 as uuidv7 } from 'uuid';
import type { Context } from '../context.ts';
import { AppError } from '../errors.ts';
import { validateImage, type ValidatedImage } from '../images/validate.ts';
import { fetchInputUrl } from '../inputs/fetch-url.ts';
import { deleteUpload, getUploads, insertUpload, type UploadRow } from '../store/uploads.ts';
import type { TaskInputRef } from '../store/tasks.ts';
import { extensionFor } from './plan-jobs.ts';

export type InputSpec =
  { upload_id: string; role?: string | undefined } | { url: string; role?: string | undefined };

/** Validates, normalises and stores an uploaded image; returns its upload record. */
export async function storeUpload(ctx: Context, data: Buffer, userId?: string): Promise<UploadRow> {
  const image: ValidatedImage = await validateImage(data, {
    maxBytes: ctx.config.uploads.maxBytes,
    maxPixels: ctx.config.uploads.maxPixels,
  });
  const id = uuidv7();
  const key = `uploads/${id}.${extensionFor(image.mime)}`;
  await ctx.storage.put(key, image.data, image.mime);
  const row = {
    id,
    storage_key: key,
    mime: image.mime,
    width: image.width,
    height: image.height,
    bytes: image.bytes,
    sha256: image.sha256,
    user_id: userId ?? null,
  };
  await insertUpload(ctx.db, row);
  return { ...row, created_at: new Date() };
}

/**
 * Resolves a task's inputs to stored, validated images in the pipeline's role order. URL inputs
 * are fetched (SSRF-guarded) and validated like uploads. Any bad input fails the submit with a
 * 4xx before anything is charged.
 */
export async function resolveInputs(
  ctx: Context,
  type: string,
  specs: InputSpec[],
  /** Set for a user token: only this user's uploads exist for it. */
  ownUserId?: string,
  /** Receives the uploads stored from URL inputs, so a caller can remove them again. */
  fetched: UploadRow[] = [],
): Promise<TaskInputRef[]> {
  const pipeline = ctx.config.pipelines[type]!;
  const roles = pipeline.inputs;
  if (pipeline.inputsRequired && specs.length !== roles.length) {
    throw new AppError(
      'invalid_input',
      `task type "${type}" needs ${roles.length} input image(s): ${roles.join(', ')}`,
    );
  }
  if (specs.length > roles.length && !pipeline.inputsRequired && specs.length > 4) {
    throw new AppError('invalid_input', `task type "${type}" takes at most 4 input images`);
  }
  const named = specs.some((s) => s.role !== undefined);
  const byRole = new Map<string, InputSpec>();
  if (named) {
    for (const spec of specs) {
      if (!spec.role || !roles.includes(spec.role)) {
        throw new AppError(
          'invalid_input',
          `input role "${spec.role ?? ''}" is not one of: ${roles.join(', ')}`,
        );
      }
      if (byRole.has(spec.role))
        throw new AppError('invalid_input', `input role "${spec.role}" is given twice`);
      byRole.set(spec.role, spec);
    }
  }
  const ordered: Array<{ role: string; spec: InputSpec }> = named
    ? roles.filter((r) => byRole.has(r)).map((r) => ({ role: r, spec: byRole.get(r)! }))
    : specs.map((spec, i) => ({ role: roles[i] ?? `input${i + 1}`, spec }));
  if (pipeline.inputsRequired && ordered.length !== roles.length) {
    throw new AppError(
      'invalid_input',
      `task type "${type}" needs inputs for every role: ${roles.join(', ')}`,
    );
  }

  const uploadIds = ordered.flatMap(({ spec }) => ('upload_id' in spec ? [spec.upload_id] : []));
  const uploads = new Map((await getUploads(ctx.db, uploadIds)).map((u) => [u.id, u]));
  const refs: TaskInputRef[] = [];
  for (const { role, spec } of ordered) {
    let upload: UploadRow | undefined;
    if ('upload_id' in spec) {
      upload = uploads.get(spec.upload_id);
      if (upload && ownUserId !== undefined && upload.user_id !== ownUserId) upload = undefined;
      if (!upload)
        throw new AppError('invalid_input', `upload "${spec.upload_id}" does not exist (or has expired)`);
    } else {
      const image = await fetchInputUrl(spec.url, {
        maxBytes: ctx.config.uploads.maxBytes,
        timeoutMs: ctx.config.inputs.fetchTimeoutMs,
        allowPrivate: ctx.config.inputs.allowPrivateUrls,
        allowHosts: ctx.config.inputs.allowHosts,
      });
      upload = await storeUpload(ctx, image.data, ownUserId);
      fetched.push(upload);
    }
    refs.push({
      role,
      upload_id: upload.id,
      storage_key: upload.storage_key,
      mime: upload.mime,
      sha256: upload.sha256,
    });
  }
  return refs;
}

/**
 * Resolves a submit's inputs and runs `submit` with them. The images fetched from URL inputs for
 * it are removed again unless `submit` created a task (202): a refused submit (402, 429, any
 * error) or one answered by an existing task (order dedup, idempotent replay) stores nothing.
 */
export async function withResolvedInputs<T extends { status: number }>(
  ctx: Context,
  type: string,
  specs: InputSpec[],
  ownUserId: string | undefined,
  submit: (inputs: TaskInputRef[]) => Promise<T>,
): Promise<T> {
  const fetched: UploadRow[] = [];
  let kept = false;
  try {
    const result = await submit(await resolveInputs(ctx, type, specs, ownUserId, fetched));
    kept = result.status === 202;
    return result;
  } finally {
    if (!kept) await discardUploads(ctx, fetched);
  }
}

async function discardUploads(ctx: Context, uploads: UploadRow[]): Promise<void> {
  for (const upload of uploads) {
    try {
      await deleteUpload(ctx.db, upload.id);
      await ctx.storage.delete(upload.storage_key);
    } catch (error) {
      // Upload retention removes it later; the submit's own answer matters more.
      ctx.log.warn({ err: error, upload: upload.id }, 'could not remove an unused fetched input');
    }
  }
}
