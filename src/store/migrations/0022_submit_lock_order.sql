-- One lock order for every write that meets a submit, so that none deadlocks with another
-- (PostgreSQL aborts one after deadlock_timeout, 1 s by default):
--
--   job rows -> task rows -> queue_depth -> user rows -> rate_limits rows
--
-- - submit batch (below; a lone submit, or one with an Idempotency-Key, is a batch of one):
--   queue_depth first, then per item its new task, its user (grant insert, charge), its user's
--   and key's rate rows, and its count on queue_depth (already held).
-- - cancel, deadline cancels (src/pipeline/transitions.ts settleTask; src/scheduler/deadlines.ts,
--   many tasks a transaction): jobs, tasks, then for a queued task that ends queue_depth (trigger
--   tasks_leave_queue), locked before the refund locks the user.
-- - admin retry (src/pipeline/retry.ts): task, queue_depth (before the charge), user.
-- - outcomes and the lease reaper (a running task): job, task, provider state, user (refund);
--   never queue_depth. Admission (src/store/schedule.ts): jobs, tasks, queue_depth; no user.
--   Admin credits (src/store/credits.ts): the user only.
--
-- 0020 locked queue_depth at its first item's count, after that item's user and rate rows, and
-- then each later item's user: a cancel (user, then queue_depth) or another API process's batch
-- (its first user, then the key's rate row) closed a cycle (test/store/submit-lock-order.test.ts).
-- Batches of all processes now run one after another (from their first item on, they did).
-- Left: an item whose order id another transaction's task row has just taken waits on that
-- transaction (ON CONFLICT); if it is an admission or a cancel of that task, it waits for the
-- counter: a deadlock, resolved by the one-by-one resend. It needs a second submit of the order
-- racing the first one's admission (submits look the order up before they queue).
CREATE OR REPLACE FUNCTION darkroom_submit_many(items jsonb)
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
  -- The queue counter first, for the whole batch (the lock order above). Held to the commit, as
  -- the first item's counter update held it before; the items' own updates of it then never wait.
  PERFORM 1 FROM queue_depth WHERE id = 1 FOR NO KEY UPDATE;
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
