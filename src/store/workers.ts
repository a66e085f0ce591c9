import { Channels, type Queryable } from './db.ts';

export interface WorkerRegistration {
  id: string;
  host: string;
  pid: number;
  roles: string;
  slots: number;
}

/** Registers a worker's slots and wakes the scheduler: new capacity is a reason to admit at once. */
export async function registerWorker(q: Queryable, w: WorkerRegistration): Promise<void> {
  await q.query(
    `WITH w AS (
       INSERT INTO workers (id, host, pid, roles, slots) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopping = false, slots = EXCLUDED.slots
       RETURNING id)
     SELECT pg_notify('${Channels.schedule}', '') FROM w`,
    [w.id, w.host, w.pid, w.roles, w.slots],
  );
}

export async function heartbeatWorker(q: Queryable, id: string, stopping: boolean): Promise<void> {
  await q.query('UPDATE workers SET heartbeat_at = now(), stopping = $2 WHERE id = $1', [id, stopping]);
}

export async function removeWorker(q: Queryable, id: string): Promise<void> {
  await q.query('DELETE FROM workers WHERE id = $1', [id]);
}

/** Forgets workers silent for longer than `staleMs` (their jobs come back through lease expiry). */
export async function pruneWorkers(q: Queryable, staleMs: number): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM workers WHERE heartbeat_at < now() - $1::int * interval '1 millisecond'`,
    [staleMs],
  );
  return rowCount;
}
