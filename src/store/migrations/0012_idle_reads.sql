-- The deadline loop looks for queued tasks whose deadline has passed every second. Without an
-- index that matches it, that was a scan of every queued task: 72 ms a round with 100,000
-- queued, most of what an idle server read from the database (bench scale, idle_server).
CREATE INDEX tasks_queued_deadline ON tasks (deadline_at)
  WHERE state = 'queued' AND deadline_at IS NOT NULL AND NOT cancel_requested;
