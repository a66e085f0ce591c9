import { createRequire } from 'node:module';
import type { PGlite, parse as parseNamespace, protocol as protocolNamespace } from '@electric-sql/pglite';
import type { QueryResult } from './db.ts';

const require = createRequire(import.meta.url);
// PGlite's CommonJS build, as pglite.ts loads it (its ESM build costs far more memory under tsx).
const { parse, protocol } = require('@electric-sql/pglite') as {
  parse: typeof parseNamespace;
  protocol: typeof protocolNamespace;
};

/** Named statements kept at most: darkroom's SQL texts are a few hundred; generated ones past it run unnamed. */
const MAX_STATEMENTS = 500;
/** feature_not_supported: "cached plan must not change result type" after DDL changed a statement's columns. */
const STALE_PLAN = '0A000';

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/**
 * The PGlite thread's session setting, run once before any statement: every run of a prepared
 * statement is planned for its values (a custom plan), as node-postgres's unnamed statements
 * are on PostgreSQL. With the default (`auto`), PostgreSQL switches a statement to a generic
 * plan after five runs when that plan's estimated cost is no worse
 * (https://www.postgresql.org/docs/17/sql-prepare.html, "Notes"), and keeps it until an
 * invalidation; PGlite has no autovacuum, so nothing invalidates a plan made while the tables
 * were empty as they fill. Measured (scratch script, 5,000 queued tasks, 60 passes): a scheduler
 * pass whose statements were planned on the empty database took 1,145 ms of CPU with the cached
 * generic plans against 26 ms with custom plans and 32 ms with query().
 */
export const PLAN_CACHE_MODE = 'SET plan_cache_mode = force_custom_plan';

/**
 * Statements through PGlite as named prepared statements, one per SQL text. PGlite's query()
 * parses and analyses the unnamed statement every time, in five calls into its WebAssembly
 * (Parse, Describe, Bind, Describe, Execute, then Sync); here a text is parsed and described
 * once, then each run is one call (Bind, Describe portal, Execute, Sync), planned for its values
 * (PLAN_CACHE_MODE). Values are serialized and rows parsed with PGlite's own serializers and
 * parsers, so results are those of query().
 * `inTransaction`: the caller runs inside a PGlite transaction, which holds the transaction lock.
 */
export function createPreparedStatements(pglite: PGlite) {
  const statements = new Map<string, { name: string; types: number[] }>();
  let named = 0;

  async function describe(sql: string): Promise<{ name: string; types: number[] } | undefined> {
    const known = statements.get(sql);
    if (known || statements.size >= MAX_STATEMENTS) return known;
    const name = `darkroom_${++named}`;
    const { messages } = await pglite.execProtocol(
      concat([
        protocol.serialize.parse({ name, text: sql }),
        protocol.serialize.describe({ type: 'S', name }),
        protocol.serialize.sync(),
      ]),
      { syncToFs: false },
    );
    const statement = { name, types: parse.parseDescribeStatementResults(messages) };
    statements.set(sql, statement);
    return statement;
  }

  async function once<R>(sql: string, params: readonly unknown[]): Promise<QueryResult<R> | undefined> {
    const statement = await describe(sql);
    if (!statement) return undefined;
    const values = params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const serialize = pglite.serializers[statement.types[i]!];
      return serialize ? serialize(value) : String(value);
    });
    const { messages } = await pglite.execProtocol(
      concat([
        protocol.serialize.bind({ statement: statement.name, values }),
        protocol.serialize.describe({ type: 'P' }),
        protocol.serialize.execute({}),
        protocol.serialize.sync(),
      ]),
    );
    const result = parse.parseResults(messages, pglite.parsers)[0]!;
    const rows = result.rows as R[];
    return { rows, rowCount: rows.length > 0 ? rows.length : (result.affectedRows ?? 0) };
  }

  async function locked<R>(
    sql: string,
    params: readonly unknown[],
    inTransaction: boolean,
  ): Promise<QueryResult<R> | undefined> {
    try {
      return await once<R>(sql, params);
    } catch (error) {
      if ((error as { code?: unknown }).code !== STALE_PLAN) throw error;
      // Prepared again on its next run; run again now only outside a transaction (inside, the error aborted it).
      const stale = statements.get(sql);
      statements.delete(sql);
      if (stale)
        await pglite.execProtocol(
          concat([protocol.serialize.close({ type: 'S', name: stale.name }), protocol.serialize.sync()]),
          { syncToFs: false },
        );
      if (inTransaction) throw error;
      return once<R>(sql, params);
    }
  }

  return {
    /** Runs `sql`; undefined when the statement cache is full (run it with query()). */
    run<R>(
      sql: string,
      params: readonly unknown[],
      inTransaction: boolean,
    ): Promise<QueryResult<R> | undefined> {
      const work = () => pglite.runExclusive(() => locked<R>(sql, params, inTransaction));
      return inTransaction ? work() : pglite._runExclusiveTransaction(work);
    },
  };
}
