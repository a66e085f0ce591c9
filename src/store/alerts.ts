import type { AlertCondition, ProviderWindow } from '../alerts/rules.ts';
import type { Queryable } from './db.ts';

export interface AlertRow {
  id: number;
  rule: string;
  key: string;
  state: 'firing' | 'resolved';
  value: number;
  threshold: number;
  summary: string;
  fired_at: Date;
  resolved_at: Date | null;
}

export interface NotificationRow {
  id: number;
  alert_id: number;
  kind: 'firing' | 'resolved';
  channel: string;
  channel_type: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  last_error: string | null;
  created_at: Date;
  delivered_at: Date | null;
}

const ALERT_COLUMNS = `id::int AS id, rule, key, state, value, threshold, summary, fired_at, resolved_at`;

/** Provider calls that ended in (now − window, now], per provider (an index range on `at`). */
export async function providerWindow(
  q: Queryable,
  now: Date,
  windowSeconds: number,
): Promise<ProviderWindow[]> {
  const { rows } = await q.query<ProviderWindow>(
    `SELECT provider, count(*)::int AS calls,
            count(*) FILTER (WHERE outcome IN ('transient', 'permanent', 'timeout'))::int AS errors,
            count(*) FILTER (WHERE outcome = 'rate_limited')::int AS "rateLimited"
       FROM provider_calls
      WHERE at > $1::timestamptz - $2::int * interval '1 second' AND at <= $1::timestamptz
      GROUP BY provider`,
    [now, windowSeconds],
  );
  return rows;
}

/** The running task that started first (the head of the active-task index). */
export async function longestRunningTask(
  q: Queryable,
): Promise<{ id: string; started_at: Date } | undefined> {
  const { rows } = await q.query<{ id: string; started_at: Date }>(
    `SELECT id, started_at FROM tasks WHERE state = 'running' AND started_at IS NOT NULL
      ORDER BY state, created_at LIMIT 1`,
  );
  return rows[0];
}

export async function countLiveWorkers(q: Queryable, now: Date, staleMs: number): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM workers
      WHERE NOT stopping AND heartbeat_at > $1::timestamptz - $2::int * interval '1 millisecond'`,
    [now, staleMs],
  );
  return rows[0]?.n ?? 0;
}

export async function firingAlerts(q: Queryable): Promise<AlertRow[]> {
  const { rows } = await q.query<AlertRow>(
    `SELECT ${ALERT_COLUMNS} FROM alerts WHERE state = 'firing' ORDER BY fired_at, id`,
  );
  return rows;
}

/**
 * Applies one evaluation in the caller's transaction: a condition with no firing alert fires
 * one, a firing alert whose condition is gone resolves, one still holding only updates its
 * value. Each transition queues a notification per channel. Returns the transitions.
 */
export async function applyEvaluation(
  tx: Queryable,
  now: Date,
  conditions: AlertCondition[],
  channels: Array<{ name: string; type: string }>,
): Promise<{ fired: AlertRow[]; resolved: AlertRow[] }> {
  const firing = await tx.query<AlertRow>(
    `SELECT ${ALERT_COLUMNS} FROM alerts WHERE state = 'firing' FOR UPDATE`,
  );
  const current = new Map(conditions.map((c) => [`${c.rule}\u0000${c.key}`, c]));
  const fired: AlertRow[] = [];
  const resolved: AlertRow[] = [];
  for (const alert of firing.rows) {
    const c = current.get(`${alert.rule}\u0000${alert.key}`);
    if (c) {
      current.delete(`${alert.rule}\u0000${alert.key}`);
      await tx.query('UPDATE alerts SET value = $2, summary = $3, updated_at = now() WHERE id = $1', [
        alert.id,
        c.value,
        c.summary,
      ]);
      continue;
    }
    const { rows } = await tx.query<AlertRow>(
      `UPDATE alerts SET state = 'resolved', resolved_at = $2, updated_at = now() WHERE id = $1 RETURNING ${ALERT_COLUMNS}`,
      [alert.id, now],
    );
    resolved.push(rows[0]!);
  }
  for (const c of current.values()) {
    const { rows } = await tx.query<AlertRow>(
      `INSERT INTO alerts (rule, key, state, value, threshold, summary, fired_at)
       VALUES ($1, $2, 'firing', $3, $4, $5, $6)
       ON CONFLICT (rule, key) WHERE state = 'firing' DO NOTHING
       RETURNING ${ALERT_COLUMNS}`,
      [c.rule, c.key, c.value, c.threshold, c.summary, now],
    );
    if (rows[0]) fired.push(rows[0]);
  }
  for (const [kind, list] of [
    ['firing', fired],
    ['resolved', resolved],
  ] as const) {
    for (const alert of list)
      for (const ch of channels)
        await tx.query(
          `INSERT INTO alert_notifications (alert_id, kind, channel, channel_type) VALUES ($1, $2, $3, $4)`,
          [alert.id, kind, ch.name, ch.type],
        );
  }
  return { fired, resolved };
}

export interface DueNotification extends NotificationRow {
  alert: AlertRow;
}

/**
 * Claims pending notifications due at `now` (the engine's clock), oldest first: each claim
 * counts an attempt and locks the row for `lockMs` of the database's clock, so two senders
 * never send the same message at once; a sender that dies leaves it to the next after that.
 */
export async function claimDueNotifications(
  q: Queryable,
  now: Date,
  limit: number,
  lockMs: number,
): Promise<DueNotification[]> {
  const { rows } = await q.query<NotificationRow & { a: AlertRow }>(
    `WITH picked AS (
       SELECT id FROM alert_notifications
        WHERE state = 'pending' AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < now())
        ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED),
     claimed AS (
       UPDATE alert_notifications n
          SET attempts = n.attempts + 1, locked_until = now() + $3::int * interval '1 millisecond'
         FROM picked WHERE n.id = picked.id
       RETURNING n.*)
     SELECT n.id::int AS id, n.alert_id::int AS alert_id, n.kind, n.channel, n.channel_type, n.state, n.attempts,
            n.last_error, n.created_at, n.delivered_at,
            json_build_object('id', a.id, 'rule', a.rule, 'key', a.key, 'state', a.state, 'value', a.value,
                              'threshold', a.threshold, 'summary', a.summary, 'fired_at', a.fired_at,
                              'resolved_at', a.resolved_at) AS a
       FROM claimed n JOIN alerts a ON a.id = n.alert_id ORDER BY n.id`,
    [now, limit, lockMs],
  );
  return rows.map(({ a, ...n }) => ({
    ...n,
    alert: {
      ...a,
      fired_at: new Date(a.fired_at),
      resolved_at: a.resolved_at === null ? null : new Date(a.resolved_at),
    },
  }));
}

export async function markNotification(
  q: Queryable,
  id: number,
  outcome: { delivered: true } | { delivered: false; error: string; retryAt: Date | undefined },
): Promise<void> {
  if (outcome.delivered) {
    await q.query(
      `UPDATE alert_notifications SET state = 'delivered', delivered_at = now(), last_error = NULL, locked_until = NULL
        WHERE id = $1`,
      [id],
    );
    return;
  }
  await q.query(
    `UPDATE alert_notifications
        SET last_error = $2, locked_until = NULL,
            state = CASE WHEN $3::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
            next_attempt_at = COALESCE($3::timestamptz, next_attempt_at)
      WHERE id = $1`,
    [id, outcome.error.slice(0, 500), outcome.retryAt ?? null],
  );
}

/** Alerts newest first with their notifications, for the admin API. */
export async function recentAlerts(
  q: Queryable,
  limit: number,
): Promise<Array<AlertRow & { notifications: NotificationRow[] }>> {
  const alerts = await q.query<AlertRow>(
    `SELECT ${ALERT_COLUMNS} FROM alerts ORDER BY fired_at DESC, id DESC LIMIT $1`,
    [limit],
  );
  const ids = alerts.rows.map((a) => a.id);
  const notes = ids.length
    ? await q.query<NotificationRow>(
        `SELECT id::int AS id, alert_id::int AS alert_id, kind, channel, channel_type, state, attempts, last_error,
                created_at, delivered_at
           FROM alert_notifications WHERE alert_id = ANY($1::bigint[]) ORDER BY id`,
        [ids],
      )
    : { rows: [] };
  return alerts.rows.map((a) => ({ ...a, notifications: notes.rows.filter((n) => n.alert_id === a.id) }));
}
