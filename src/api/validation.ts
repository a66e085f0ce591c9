import type { FastifyRequest } from 'fastify';
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

/** Nesting any request value may have; darkroom's own bodies need 4, params get their own bound. */
export const MAX_REQUEST_DEPTH = 32;

// PostgreSQL text and jsonb cannot hold U+0000, and a lone UTF-16 surrogate has no UTF-8 form.
const NUL = '\u0000';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function textProblem(text: string): string | undefined {
  if (text.includes(NUL)) return 'contains a NUL character (U+0000)';
  if (LONE_SURROGATE.test(text)) return 'contains a lone UTF-16 surrogate (not valid Unicode)';
  return undefined;
}

/**
 * The first string (value or key) in `value` that darkroom cannot store, or nesting deeper than
 * `maxDepth`, as "path: problem". Walks with its own stack, so no input depth can overflow it.
 */
export function findBadValue(value: unknown, where: string, maxDepth: number): string | undefined {
  const stack: Array<{ value: unknown; path: string; depth: number }> = [{ value, path: '', depth: 0 }];
  const name = (path: string): string => (path === '' ? where : path);
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item.value === 'string') {
      const problem = textProblem(item.value);
      if (problem) return `${name(item.path)}: ${problem}`;
      continue;
    }
    if (item.value === null || typeof item.value !== 'object') continue;
    if (item.depth >= maxDepth) return `${name(item.path)}: nested deeper than ${maxDepth} levels`;
    const entries = Array.isArray(item.value)
      ? item.value.map((v, i) => [String(i), v] as const)
      : Object.entries(item.value);
    for (const [key, child] of entries) {
      const problem = textProblem(key);
      if (problem) return `${name(item.path)}: a key ${problem}`;
      stack.push({
        value: child,
        path: item.path === '' ? key : `${item.path}.${key}`,
        depth: item.depth + 1,
      });
    }
  }
  return undefined;
}

/**
 * A preValidation hook for every route: path parameters, query and JSON body must hold only
 * text darkroom can store, nested at most MAX_REQUEST_DEPTH deep; else 400 naming the field.
 * Runs before any handler hashes, stores or looks the values up.
 */
export async function refuseUnstorableInput(request: FastifyRequest): Promise<void> {
  const problem =
    findBadValue(request.params, 'path parameter', 2) ??
    findBadValue(request.query, 'query', 2) ??
    (request.isMultipart() ? undefined : findBadValue(request.body, 'body', MAX_REQUEST_DEPTH));
  if (problem) throw new AppError('validation_failed', problem);
}
