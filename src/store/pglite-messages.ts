/**
 * The messages between the PGlite thread's two ends (pglite-thread.ts in the server's thread,
 * pglite-worker.ts in the worker), and errors in a form that crosses between them.
 */

/** A statement outside any transaction (`tx` undefined) or inside the open transaction `tx`. */
export type Request =
  | { op: 'query'; id: number; tx?: number; sql: string; params?: readonly unknown[] }
  | { op: 'exec'; id: number; tx?: number; sql: string }
  /** Opens transaction `tx` as soon as PGlite is free; its statements name it. No reply. */
  | { op: 'begin'; tx: number }
  /** Commits (or rolls back) transaction `tx` once its statements sent so far have answered. */
  | { op: 'end'; id: number; tx: number; commit: boolean }
  | { op: 'listen'; id: number; channel: string }
  | { op: 'unlisten'; id: number; channel: string }
  | { op: 'close'; id: number };

export type Reply =
  | { type: 'ready' }
  | { type: 'failed'; error: WireError }
  | { type: 'result'; id: number; rows: unknown[]; rowCount: number }
  | { type: 'done'; id: number }
  | { type: 'error'; id: number; error: WireError }
  | { type: 'notification'; channel: string; payload: string };

/**
 * An error's name, message, stack and every string or number field it carries: PGlite's
 * DatabaseError fields (code = SQLSTATE, detail, hint, constraint, table, column, schema,
 * severity, where, position, routine…) and the `query` PGlite adds. Structured clone keeps an
 * Error's message and stack but none of these fields, so they are copied out by hand.
 */
export interface WireError {
  name: string;
  message: string;
  stack: string | undefined;
  fields: Record<string, string | number | boolean>;
}

export function toWireError(error: unknown): WireError {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: String(error), stack: undefined, fields: {} };
  }
  const fields: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(error)) {
    if (key === 'name' || key === 'message' || key === 'stack') continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      fields[key] = value;
  }
  return { name: error.name, message: error.message, stack: error.stack, fields };
}

/** The error as the server's thread sees it: an Error with the same name, message and fields. */
export function fromWireError(wire: WireError): Error {
  const error = new Error(wire.message);
  Object.assign(error, wire.fields);
  error.name = wire.name;
  if (wire.stack) error.stack = `${wire.stack}\n    at (PGlite worker thread)`;
  return error;
}
