-- Group commit of submits (src/store/submit-write.ts, src/pipeline/submit-batch.ts). One submit a
-- statement (0016) still locked the rows every submit shares, the key's rate window and
-- queue_depth, once per submit: at 500 submits/s on a 2-core machine the holders were
-- descheduled with the lock held and the rest queued behind them (pg_stat_statements: 9.1 ms of
-- the submit's 12.7 ms in the rate-window upsert). Now the API process sends the submits that
-- arrived while the previous batch was in flight as one statement: the shared rows are locked
-- once per batch, and the limits stay exact (one transaction counts them in turn).
--
-- Each item runs 0016's logic in its own block: a refusal (DR001 balance short, DR002 over a
-- limit) rolls back that item alone, its writes and its NOTIFYs, and is answered per item.
-- Any other error fails the statement; the caller then sends the items one by one.
--
-- The user's queued count is planned per call (see below). The position stored and answered is the queue depth the item's own counter update found
-- (each item sees the depth its predecessor left): exact, and no two the same.
--
-- One output row per item, in order: outcome 'queued' (with the task's answer columns),
-- 'order_taken' (the order already has an active task: nothing written), 'short', or 'refused'
-- (detail: the counts as JSON, judged by src/policy/submit-limits.ts).
DROP FUNCTION darkroom_submit(jsonb, jsonb);

CREATE FUNCTION darkroom_submit_many(items jsonb)
RETURNS TABLE (o_item integer, o_outcome text, o_detail text, o_id text, o_state text,
               o_images_total integer, o_credits_charged integer, o_created_at timestamptz,
               o_position integer)
LANGUAGE plpgsql AS $$
DECLARE
  p jsonb;
  t tasks;
  buckets text[];
  user_queued integer;
  user_window integer;
  key_window integer;
  ahead integer;
BEGIN
  FOR i IN 0 .. jsonb_array_length(items) - 1 LOOP
    p := items->i;
    o_item := i;
    o_detail := NULL;
    o_id := NULL; o_state := NULL; o_images_total := NULL; o_credits_charged := NULL;
    o_created_at := NULL; o_position := NULL;
    buckets := ARRAY(SELECT jsonb_array_elements_text(p->'buckets'));
    BEGIN
      INSERT INTO tasks (id, user_id, order_id, type, plan, prompt, inputs, params, seed, weight, state, stage,
                         images_total, credits_charged, deadline_at, webhook_url, webhook_stages)
      VALUES (p->>'id', p->>'user_id', p->>'order_id', p->>'type', p->>'plan', p->>'prompt', p->'inputs',
              p->'params', (p->>'seed')::integer, (p->>'weight')::real, 'queued', p->>'stage',
              (p->>'images_total')::integer, (p->>'credits')::integer,
              now() + (p->>'deadline_seconds')::integer * interval '1 second',
              p->>'webhook_url', (p->>'webhook_stages')::boolean)
      ON CONFLICT (user_id, order_id) WHERE order_id IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
      RETURNING * INTO t;
      IF t.id IS NULL THEN
        o_outcome := 'order_taken';
      ELSE
        INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count,
                          state, max_attempts, input)
        SELECT x.id, t.id, t.user_id, x.step_index, x.step_name, x.kind, x.resource, x.first_index, x.count,
               'queued', x.max_attempts, x.input
          FROM jsonb_to_recordset(p->'jobs') AS x(id text, step_index int, step_name text, kind text,
               resource text, first_index int, count int, max_attempts int, input jsonb);
        INSERT INTO events (task_id, user_id, type, data)
        VALUES (t.id, t.user_id, 'queued', '{"state":"queued"}');
        PERFORM pg_notify('darkroom_task', t.id), pg_notify('darkroom_schedule', '');

        IF p->>'grant' IS NOT NULL THEN
          WITH u AS (INSERT INTO users (id, balance) VALUES (t.user_id, (p->>'grant')::integer)
                     ON CONFLICT (id) DO NOTHING RETURNING id)
          INSERT INTO credit_ledger (user_id, delta, reason)
          SELECT u.id, (p->>'grant')::integer, 'grant' FROM u WHERE (p->>'grant')::integer <> 0;
        END IF;
        UPDATE users SET balance = balance - t.credits_charged
         WHERE id = t.user_id AND balance >= t.credits_charged;
        IF NOT FOUND THEN
          RAISE EXCEPTION 'the balance is short of the plan''s credits' USING ERRCODE = 'DR001';
        END IF;
        INSERT INTO credit_ledger (user_id, task_id, delta, reason)
        VALUES (t.user_id, t.id, -t.credits_charged, 'charge');

        -- Planned for this user each time (EXECUTE): a plan cached by the session while tasks was
        -- small scanned every queued task through tasks_active and filtered on the user (7.7 ms
        -- at 20,000 queued, EXPLAIN through auto_explain), until an ANALYZE replaced it.
        EXECUTE 'SELECT count(*)::integer FROM tasks WHERE user_id = $1 AND state = ''queued'''
          INTO user_queued USING t.user_id;
        WITH b AS (
          INSERT INTO rate_limits (bucket, window_start, count)
          SELECT x.bucket, (p->>'window_start')::timestamptz, 1 FROM unnest(buckets) AS x(bucket)
          ON CONFLICT (bucket) DO UPDATE SET
            count = CASE WHEN EXCLUDED.window_start > rate_limits.window_start THEN 1
                         ELSE rate_limits.count + 1 END,
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
        INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
        VALUES (t.id, ahead, to_timestamp((p->>'start_ms')::float8 / 1000),
                to_timestamp((p->>'finish_ms')::float8 / 1000), 'submit', now())
        ON CONFLICT (task_id) DO NOTHING;
        o_outcome := 'queued';
        o_id := t.id; o_state := t.state; o_images_total := t.images_total;
        o_credits_charged := t.credits_charged; o_created_at := t.created_at; o_position := ahead;
      END IF;
    EXCEPTION
      WHEN SQLSTATE 'DR001' THEN
        o_outcome := 'short';
      WHEN SQLSTATE 'DR002' THEN
        o_outcome := 'refused';
        GET STACKED DIAGNOSTICS o_detail = PG_EXCEPTION_DETAIL;
    END;
    RETURN NEXT;
  END LOOP;
END
$$;
