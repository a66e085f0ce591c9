import type { Queryable } from './db.ts';

export type TaskEventType =
  'queued' | 'running' | 'stage' | 'progress' | 'step_progress' | 'finished' | 'cancel_requested' | 'retried';

export interface EventRow {
  id: number;
  task_id: string;
  user_id: string;
  type: TaskEventType;
  data: Record<string, unknown>;
  created_at: Date;
}

/** Appends to the outbox; the NOTIFY is delivered when the transaction commits. */
export async function appendEvent(
  tx: Queryable,
  taskId: string,
  userId: string,
  type: TaskEventType,
  data: Record<string, unknown>,
): Promise<void> {
  await tx.query(
    `INSERT INTO events (task_id, user_id, type, data) VALUES ($1, $2, $3, $4::jsonb)
     RETURNING pg_notify('darkroom_task', task_id)`,
    [taskId, userId, type, JSON.stringify(data)],
  );
}

export async function eventsAfter(
  q: Queryable,
  taskId: string,
  afterId: number,
  limit = 500,
): Promise<EventRow[]> {
  const { rows } = await q.query<EventRow>(
    'SELECT id::int AS id, task_id, user_id, type, data, created_at FROM events WHERE task_id = $1 AND id > $2 ORDER BY id LIMIT $3',
    [taskId, afterId, limit],
  );
  return rows;
}

/** The newest event id of a task (0 when none), so a stream can start from "now". */
/** When an event was recorded; undefined when it is gone. */
export async function eventCreatedAt(q: Queryable, id: number): Promise<Date | undefined> {
  const { rows } = await q.query<{ created_at: Date }>('SELECT created_at FROM events WHERE id = $1', [id]);
  return rows[0]?.created_at;
}

export async function lastEventId(q: Queryable, taskId: string): Promise<number> {
  const { rows } = await q.query<{ id: number | null }>(
    'SELECT max(id)::int AS id FROM events WHERE task_id = $1',
    [taskId],
  );
  return rows[0]?.id ?? 0;
}
