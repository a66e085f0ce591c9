import type { Db, Queryable } from '../../src/store/db.ts';

/**
 * The Db, with every statement it runs recorded in `statements` (in transactions or not; each a
 * round trip). With `markTransactions`, each transaction it opens is recorded too, as 'BEGIN'.
 */
export function countingDb(db: Db, statements: string[], options: { markTransactions?: boolean } = {}): Db {
  const wrap = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      statements.push(sql);
      return q.query(sql, params);
    },
    exec: (sql) => q.exec(sql),
  });
  return Object.assign(Object.create(db) as Db, {
    ...wrap(db),
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) => {
      if (options.markTransactions) statements.push('BEGIN');
      return db.transaction((tx) => fn(wrap(tx)));
    },
  });
}
