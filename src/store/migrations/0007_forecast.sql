-- The queue forecast, written by the scheduler leader after its admission passes
-- (src/scheduler/forecaster.ts) so that task reads, lists and SSE streams read a row each
-- instead of simulating the queue on the request path.

-- One row per forecast task: its place in the predicted start order and its predicted start and
-- finish. `basis`: 'simulated' (run under the policy), 'extrapolated' (first-come arithmetic past
-- what the run simulated), 'submit' (the estimate the submit answered; no forecast yet).
CREATE TABLE task_forecasts (
  task_id      text PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
  position     integer NOT NULL,
  start_at     timestamptz,
  finish_at    timestamptz NOT NULL,
  basis        text NOT NULL CHECK (basis IN ('simulated', 'extrapolated', 'submit')),
  forecast_at  timestamptz NOT NULL
);

-- The last forecast as a whole (one row): when it was made, when the leader last confirmed
-- that nothing changed since, what it covered, and when the last queued task it saw starts.
CREATE TABLE forecast_state (
  id           integer PRIMARY KEY CHECK (id = 1),
  forecast_at  timestamptz NOT NULL,
  checked_at   timestamptz NOT NULL,
  queued       integer NOT NULL,
  tail_start_at timestamptz NOT NULL,
  complete     boolean NOT NULL,
  -- For a submit's estimate: one fresh task's own service time by "type/plan" (ms), and the
  -- spacing of predicted starts per queued task (ms).
  service_ms   jsonb NOT NULL,
  per_task_ms  double precision NOT NULL
);

-- The number of queued tasks, for the queue bound (limits.maxQueuedTasks) without counting the
-- queue. A submit adds itself as the last statement of its transaction, conditionally on the
-- bound, so concurrent submits serialise on this row only through their commit; a task leaving
-- 'queued' (admitted, canceled, deleted) takes itself off in the trigger below.
CREATE TABLE queue_depth (
  id      integer PRIMARY KEY CHECK (id = 1),
  queued  integer NOT NULL
);
INSERT INTO queue_depth (id, queued) SELECT 1, count(*) FROM tasks WHERE state = 'queued';

CREATE FUNCTION queue_depth_leave() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE queue_depth SET queued = GREATEST(0, queued - 1) WHERE id = 1;
  RETURN NULL;
END $$;

CREATE TRIGGER tasks_leave_queue AFTER UPDATE OF state ON tasks
  FOR EACH ROW WHEN (OLD.state = 'queued' AND NEW.state <> 'queued') EXECUTE FUNCTION queue_depth_leave();
CREATE TRIGGER tasks_delete_queued AFTER DELETE ON tasks
  FOR EACH ROW WHEN (OLD.state = 'queued') EXECUTE FUNCTION queue_depth_leave();

-- Lists by state, newest first (GET /v1/tasks?state=queued): without it the list walks the
-- primary key backwards through every task of other states.
CREATE INDEX tasks_state_recent ON tasks (state, id DESC);
