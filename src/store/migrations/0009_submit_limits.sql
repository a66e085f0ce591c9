-- The per-user cap on queued tasks counts only these rows.
CREATE INDEX tasks_user_queued ON tasks (user_id) WHERE state = 'queued';
