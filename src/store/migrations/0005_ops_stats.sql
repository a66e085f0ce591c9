-- Operations statistics kept by the database itself, so that every process (API, worker,
-- scheduler) reads the same cluster-wide figures and no request scans the task history.
--
-- Triggers on tasks, jobs and credit_ledger append one small row per event to stat_deltas
-- (append-only: concurrent transactions never wait on a shared counter row); the scheduler
-- leader folds them into stat_totals every few seconds. A reader sums both in one statement.
-- `labels` is the jsonb text of the series' labels; histograms have an `le` label per bucket
-- (not cumulative) with `v` the sum of the observed values.

CREATE TABLE stat_deltas (
  id      bigserial PRIMARY KEY,
  name    text NOT NULL,
  labels  text NOT NULL,
  n       bigint NOT NULL,
  v       double precision NOT NULL DEFAULT 0
);

CREATE TABLE stat_totals (
  name    text NOT NULL,
  labels  text NOT NULL,
  n       bigint NOT NULL,
  v       double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (name, labels)
);

CREATE FUNCTION darkroom_stat(p_name text, p_labels jsonb, p_n bigint, p_v double precision)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO stat_deltas (name, labels, n, v) VALUES (p_name, p_labels::text, p_n, p_v)
$$;

-- The histogram bucket (upper bound, as Prometheus' `le`) a value falls in.
CREATE FUNCTION darkroom_le(p_value double precision, p_bounds double precision[])
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE((SELECT min(b) FROM unnest(p_bounds) AS b WHERE p_value <= b)::text, '+Inf')
$$;

-- Keep in step with TASK_SECONDS_BUCKETS / JOB_SECONDS_BUCKETS in src/store/counters.ts.
CREATE FUNCTION darkroom_observe(p_name text, p_labels jsonb, p_value double precision, p_bounds double precision[])
RETURNS void LANGUAGE sql AS $$
  SELECT darkroom_stat(p_name, p_labels || jsonb_build_object('le', darkroom_le(p_value, p_bounds)), 1, p_value)
$$;

CREATE FUNCTION darkroom_tasks_stats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  task_bounds double precision[] := ARRAY[1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600];
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM darkroom_stat('tasks_submitted', jsonb_build_object('plan', NEW.plan), 1, 0);
    PERFORM darkroom_stat('tasks_active', jsonb_build_object('state', NEW.state, 'plan', NEW.plan), 1, 0);
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    IF OLD.state IN ('queued', 'running') THEN
      PERFORM darkroom_stat('tasks_active', jsonb_build_object('state', OLD.state, 'plan', OLD.plan), -1, 0);
    END IF;
    RETURN NULL;
  END IF;
  IF OLD.state IN ('queued', 'running') THEN
    PERFORM darkroom_stat('tasks_active', jsonb_build_object('state', OLD.state, 'plan', OLD.plan), -1, 0);
  END IF;
  IF NEW.state IN ('queued', 'running') THEN
    PERFORM darkroom_stat('tasks_active', jsonb_build_object('state', NEW.state, 'plan', NEW.plan), 1, 0);
  ELSE
    PERFORM darkroom_stat('tasks_finished', jsonb_build_object('state', NEW.state, 'plan', NEW.plan), 1,
                          NEW.images_done);
    PERFORM darkroom_observe('task_duration_seconds', jsonb_build_object('plan', NEW.plan),
                             extract(epoch FROM COALESCE(NEW.finished_at, now()) - NEW.created_at), task_bounds);
  END IF;
  IF OLD.state = 'queued' AND NEW.state <> 'queued' AND NEW.started_at IS NOT NULL THEN
    PERFORM darkroom_observe('task_queue_wait_seconds', jsonb_build_object('plan', NEW.plan),
                             extract(epoch FROM NEW.started_at - NEW.created_at), task_bounds);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER tasks_stats_insert_delete AFTER INSERT OR DELETE ON tasks
  FOR EACH ROW EXECUTE FUNCTION darkroom_tasks_stats();
CREATE TRIGGER tasks_stats_update AFTER UPDATE OF state ON tasks
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION darkroom_tasks_stats();

CREATE FUNCTION darkroom_jobs_stats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  job_bounds double precision[] := ARRAY[0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300];
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM darkroom_stat('jobs_active', jsonb_build_object('state', NEW.state, 'resource', NEW.resource), 1, 0);
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    IF OLD.state IN ('queued', 'admitted', 'running') THEN
      PERFORM darkroom_stat('jobs_active', jsonb_build_object('state', OLD.state, 'resource', OLD.resource), -1, 0);
    END IF;
    RETURN NULL;
  END IF;
  IF OLD.state IN ('queued', 'admitted', 'running') THEN
    PERFORM darkroom_stat('jobs_active', jsonb_build_object('state', OLD.state, 'resource', OLD.resource), -1, 0);
  END IF;
  IF NEW.state IN ('queued', 'admitted', 'running') THEN
    PERFORM darkroom_stat('jobs_active', jsonb_build_object('state', NEW.state, 'resource', NEW.resource), 1, 0);
  END IF;
  IF NEW.state = 'admitted' THEN
    PERFORM darkroom_stat('jobs_admitted', jsonb_build_object('resource', NEW.resource), 1, 0);
  END IF;
  IF NEW.state = 'running' AND NEW.started_at IS NOT NULL THEN
    PERFORM darkroom_observe('job_queue_wait_seconds', jsonb_build_object('kind', NEW.kind, 'resource', NEW.resource),
                             GREATEST(0, extract(epoch FROM NEW.started_at - GREATEST(NEW.created_at, OLD.run_after))),
                             job_bounds);
  END IF;
  IF OLD.state = 'running' AND NEW.state <> 'running' THEN
    IF NEW.state IN ('succeeded', 'failed') AND OLD.started_at IS NOT NULL THEN
      PERFORM darkroom_observe('job_duration_seconds',
                               jsonb_build_object('kind', NEW.kind, 'resource', NEW.resource, 'state', NEW.state),
                               extract(epoch FROM COALESCE(NEW.finished_at, now()) - OLD.started_at), job_bounds);
    END IF;
    -- The outcome was written after the lease ran out: the reaper's doing (its worker went silent).
    IF OLD.lease_expires_at IS NOT NULL AND OLD.lease_expires_at < now() THEN
      PERFORM darkroom_stat('lease_expiries', jsonb_build_object('resource', NEW.resource), 1, 0);
    END IF;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER jobs_stats_insert_delete AFTER INSERT OR DELETE ON jobs
  FOR EACH ROW EXECUTE FUNCTION darkroom_jobs_stats();
CREATE TRIGGER jobs_stats_update AFTER UPDATE OF state ON jobs
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION darkroom_jobs_stats();

CREATE FUNCTION darkroom_ledger_stats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.reason IN ('charge', 'refund') THEN
    PERFORM darkroom_stat('credits_' || NEW.reason, '{}'::jsonb, 1, abs(NEW.delta));
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER credit_ledger_stats AFTER INSERT ON credit_ledger
  FOR EACH ROW EXECUTE FUNCTION darkroom_ledger_stats();

-- Counters start from what is already there, so an upgraded database reports true totals.
INSERT INTO stat_totals (name, labels, n, v)
  SELECT 'tasks_submitted', jsonb_build_object('plan', plan)::text, count(*), 0 FROM tasks GROUP BY plan;
INSERT INTO stat_totals (name, labels, n, v)
  SELECT 'tasks_active', jsonb_build_object('state', state, 'plan', plan)::text, count(*), 0
    FROM tasks WHERE state IN ('queued', 'running') GROUP BY state, plan;
INSERT INTO stat_totals (name, labels, n, v)
  SELECT 'tasks_finished', jsonb_build_object('state', state, 'plan', plan)::text, count(*), sum(images_done)
    FROM tasks WHERE state NOT IN ('queued', 'running') GROUP BY state, plan;
INSERT INTO stat_totals (name, labels, n, v)
  SELECT 'jobs_active', jsonb_build_object('state', state, 'resource', resource)::text, count(*), 0
    FROM jobs WHERE state IN ('queued', 'admitted', 'running') GROUP BY state, resource;

-- Throughput over the last minutes and the last finish: a range scan, not the whole history.
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- One row per provider call (any process), for the admin view, the alert rates and the
-- dashboards; the scheduler leader drops rows older than an hour.
CREATE TABLE provider_calls (
  id          bigserial PRIMARY KEY,
  provider    text NOT NULL,
  key_id      text NOT NULL,
  outcome     text NOT NULL CHECK (outcome IN ('success', 'rate_limited', 'transient', 'permanent', 'timeout')),
  latency_ms  integer NOT NULL,
  at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_calls_key ON provider_calls (provider, key_id, at);
CREATE INDEX provider_calls_at ON provider_calls (at);

-- The last failure of each key, kept apart from the hot provider_state rows.
CREATE TABLE provider_key_errors (
  provider  text NOT NULL,
  key_id    text NOT NULL,
  outcome   text NOT NULL,
  message   text NOT NULL,
  at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, key_id)
);
