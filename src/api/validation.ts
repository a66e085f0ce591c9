import type { z } from 'zod';
import { AppError } from '../errors.ts';

/** Parses with zod; a failure becomes a 400 naming each bad field. */
export function parseBody<S extends z.ZodType>(schema: S, value: unknown, where = 'body'): z.output<S> {
  if (value === undefined || value === null) {
    if (where === 'body') throw new AppError('validation_failed', 'a JSON body is required');
  }
  const parsed = schema.safeParse(value ?? {});
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map(
    (i) => `${i.path.length ? i.path.join('.') : where}: ${i.message}`,
  );
  throw new AppError('validation_failed', problems.join('; '));
}
