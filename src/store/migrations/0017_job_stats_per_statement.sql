-- The jobs counters of 0005, kept per statement instead of per row. A job's life (insert,
-- admission, claim, outcome) fired the row trigger four times, each running two or three
-- darkroom_stat()/darkroom_observe() calls with an INSERT apiece: about nine inserts into
-- stat_deltas per job, most of the triggers' cost in the engine overhead bench. Now each
-- statement that inserts or moves jobs (an admission pass, a claim of several jobs, an outcome)
-- runs one INSERT of its deltas summed by series. The series, labels and values are those of
-- 0005 (same jsonb text, same buckets); only how many rows carry them changes.
--
-- Transition tables cannot go with a column list (UPDATE OF state), so the update trigger runs
-- for every UPDATE of jobs and keeps only the rows whose state changed, as 0005's WHEN did.
-- DELETE keeps its row trigger (retention deletes finished jobs, which count nothing).

DROP TRIGGER jobs_stats_insert_delete ON jobs;
DROP TRIGGER jobs_stats_update ON jobs;
CREATE TRIGGER jobs_stats_delete AFTER DELETE ON jobs
  FOR EACH ROW EXECUTE FUNCTION darkroom_jobs_stats();

CREATE FUNCTION darkroom_jobs_stats_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO stat_deltas (name, labels, n, v)
  SELECT 'jobs_active', jsonb_build_object('state', state, 'resource', resource)::text, count(*), 0
    FROM new_jobs GROUP BY state, resource;
  RETURN NULL;
END
$$;

CREATE TRIGGER jobs_stats_insert AFTER INSERT ON jobs
  REFERENCING NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION darkroom_jobs_stats_insert();

CREATE FUNCTION darkroom_jobs_stats_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  -- Keep in step with JOB_SECONDS_BUCKETS in src/store/counters.ts (and 0005).
  job_bounds double precision[] := ARRAY[0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300];
BEGIN
  WITH c AS (
    SELECT o.state AS old_state, o.run_after AS old_run_after, o.started_at AS old_started_at,
           o.lease_expires_at AS old_lease_expires_at, n.state, n.resource, n.kind, n.started_at,
           n.created_at, n.finished_at
      FROM old_jobs o JOIN new_jobs n ON n.id = o.id
     WHERE o.state IS DISTINCT FROM n.state
  ), d (name, labels, n, v) AS (
    SELECT 'jobs_active', jsonb_build_object('state', old_state, 'resource', resource), -1, 0::float8
      FROM c WHERE old_state IN ('queued', 'admitted', 'running')
    UNION ALL
    SELECT 'jobs_active', jsonb_build_object('state', state, 'resource', resource), 1, 0
      FROM c WHERE state IN ('queued', 'admitted', 'running')
    UNION ALL
    SELECT 'jobs_admitted', jsonb_build_object('resource', resource), 1, 0
      FROM c WHERE state = 'admitted'
    UNION ALL
    SELECT 'job_queue_wait_seconds',
           jsonb_build_object('kind', kind, 'resource', resource) || jsonb_build_object('le', darkroom_le(w, job_bounds)),
           1, w
      FROM c, LATERAL (SELECT GREATEST(0, extract(epoch FROM started_at - GREATEST(created_at, old_run_after)))::float8 AS w) x
     WHERE state = 'running' AND started_at IS NOT NULL
    UNION ALL
    SELECT 'job_duration_seconds',
           jsonb_build_object('kind', kind, 'resource', resource, 'state', state) || jsonb_build_object('le', darkroom_le(s, job_bounds)),
           1, s
      FROM c, LATERAL (SELECT extract(epoch FROM COALESCE(finished_at, now()) - old_started_at)::float8 AS s) x
     WHERE old_state = 'running' AND state IN ('succeeded', 'failed') AND old_started_at IS NOT NULL
    UNION ALL
    -- The outcome was written after the lease ran out: the reaper's doing (its worker went silent).
    SELECT 'lease_expiries', jsonb_build_object('resource', resource), 1, 0
      FROM c WHERE old_state = 'running' AND state <> 'running'
       AND old_lease_expires_at IS NOT NULL AND old_lease_expires_at < now()
  )
  INSERT INTO stat_deltas (name, labels, n, v)
  SELECT name, labels::text, sum(n), sum(v) FROM d GROUP BY name, labels::text
  HAVING sum(n) <> 0 OR sum(v) <> 0;
  RETURN NULL;
END
$$;

CREATE TRIGGER jobs_stats_update AFTER UPDATE ON jobs
  REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
  FOR EACH STATEMENT EXECUTE FUNCTION darkroom_jobs_stats_update();
