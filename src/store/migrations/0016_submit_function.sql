-- The whole submit in one statement (src/store/submit-write.ts, submitInOneStatement), so that a
-- plain submit is one round trip committed by the server itself. As a transaction of five
-- statements, a submit held the counter rows every submit shares (queue_depth, and its key's
-- rate window) from its last statement until its COMMIT arrived: one client round trip through
-- a busy event loop, during which every other submit waited on the row lock (pg_stat_activity
-- at 500 submits/s: most backends in Lock/transactionid on the counters). Here the rows are held
-- from the counters' update to the commit, inside the server.
--
-- Order as before: the task bundle, the user and its grant, the charge (locks the user's row,
-- so the user's queued count below is exact), the counters last. A function statement sees
-- the effects of the ones before it (each takes a new snapshot under READ COMMITTED).
--
-- Returns the task, or no row when the order already has an active task (nothing written).
-- Raises DR001 when the balance is short and DR002 when a limit refuses the submit (DETAIL: the
-- counts as JSON, judged by src/policy/submit-limits.ts for the answer); either rolls all back.
CREATE FUNCTION darkroom_submit(p jsonb, p_jobs jsonb) RETURNS SETOF tasks LANGUAGE plpgsql AS $$
DECLARE
  t tasks;
  buckets text[] := ARRAY(SELECT jsonb_array_elements_text(p->'buckets'));
  user_queued integer;
  user_window integer;
  key_window integer;
  ahead integer;
BEGIN
  INSERT INTO tasks (id, user_id, order_id, type, plan, prompt, inputs, params, seed, weight, state, stage,
                     images_total, credits_charged, deadline_at, webhook_url, webhook_stages)
  VALUES (p->>'id', p->>'user_id', p->>'order_id', p->>'type', p->>'plan', p->>'prompt', p->'inputs', p->'params',
          (p->>'seed')::integer, (p->>'weight')::real, 'queued', p->>'stage', (p->>'images_total')::integer,
          (p->>'credits')::integer, now() + (p->>'deadline_seconds')::integer * interval '1 second',
          p->>'webhook_url', (p->>'webhook_stages')::boolean)
  ON CONFLICT (user_id, order_id) WHERE order_id IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
  RETURNING * INTO t;
  IF t.id IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count, state,
                    max_attempts, input)
  SELECT x.id, t.id, t.user_id, x.step_index, x.step_name, x.kind, x.resource, x.first_index, x.count,
         'queued', x.max_attempts, x.input
    FROM jsonb_to_recordset(p_jobs) AS x(id text, step_index int, step_name text, kind text,
         resource text, first_index int, count int, max_attempts int, input jsonb);
  INSERT INTO events (task_id, user_id, type, data) VALUES (t.id, t.user_id, 'queued', '{"state":"queued"}');
  INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
  VALUES (t.id, (p->>'position')::integer, to_timestamp((p->>'start_ms')::float8 / 1000),
          to_timestamp((p->>'finish_ms')::float8 / 1000), 'submit', now())
  ON CONFLICT (task_id) DO NOTHING;
  PERFORM pg_notify('darkroom_task', t.id), pg_notify('darkroom_schedule', '');

  IF p->>'grant' IS NOT NULL THEN
    WITH u AS (INSERT INTO users (id, balance) VALUES (t.user_id, (p->>'grant')::integer)
               ON CONFLICT (id) DO NOTHING RETURNING id)
    INSERT INTO credit_ledger (user_id, delta, reason)
    SELECT u.id, (p->>'grant')::integer, 'grant' FROM u WHERE (p->>'grant')::integer <> 0;
  END IF;
  UPDATE users SET balance = balance - t.credits_charged WHERE id = t.user_id AND balance >= t.credits_charged;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the balance is short of the plan''s credits' USING ERRCODE = 'DR001';
  END IF;
  INSERT INTO credit_ledger (user_id, task_id, delta, reason) VALUES (t.user_id, t.id, -t.credits_charged, 'charge');

  SELECT count(*)::integer INTO user_queued FROM tasks WHERE user_id = t.user_id AND state = 'queued';
  WITH b AS (
    INSERT INTO rate_limits (bucket, window_start, count)
    SELECT x.bucket, (p->>'window_start')::timestamptz, 1 FROM unnest(buckets) AS x(bucket)
    ON CONFLICT (bucket) DO UPDATE SET
      count = CASE WHEN EXCLUDED.window_start > rate_limits.window_start THEN 1 ELSE rate_limits.count + 1 END,
      window_start = GREATEST(rate_limits.window_start, EXCLUDED.window_start)
    RETURNING bucket, count
  )
  SELECT (SELECT count FROM b WHERE bucket = buckets[1]), (SELECT count FROM b WHERE bucket = buckets[2])
    INTO user_window, key_window;
  UPDATE queue_depth SET queued = queued + 1 WHERE id = 1 AND queued < (p->>'max_queued')::integer
  RETURNING queued - 1 INTO ahead;
  IF ahead IS NULL OR user_queued > (p->>'per_user_queued')::integer
     OR user_window > (p->>'user_per_minute')::integer
     OR key_window > (p->>'key_per_minute')::integer THEN
    RAISE EXCEPTION 'the submit is over a limit' USING ERRCODE = 'DR002',
      DETAIL = json_build_object('user_queued', user_queued, 'user_window', user_window,
                                 'key_window', key_window, 'ahead', ahead)::text;
  END IF;
  RETURN NEXT t;
END
$$;
