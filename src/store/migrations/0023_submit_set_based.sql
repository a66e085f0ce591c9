-- A batch of submits written set-based: one statement per table for the whole batch instead of
-- about twenty statements and a subtransaction per submit. darkroom_submit_many (0022) spent
-- 1.5-3.2 ms of server time per submit in a batch of 32 on the 2-core bench machine (its
-- statements, their triggers and foreign-key checks, one subtransaction each), and batches run
-- one at a time: that time is what a submit at 500/s queues behind (docs/benchmarks.md).
--
-- The fast path writes every item as accepted, in one subtransaction, and checks afterwards,
-- per item and in item order, exactly what the item-by-item function checks: an order already
-- active, the balance, the per-user queued cap, the rate windows, the queue bound. All items
-- pass: the batch is written, with the counts and positions the item-by-item function would
-- have given (an item counts the batch's earlier items). Any item fails: the subtransaction
-- rolls back and the item-by-item function (0022's, renamed darkroom_submit_each) decides every
-- item, refusals alone, as before. Same lock order (0022): queue_depth first, then the new
-- task rows, the users (by id), the rate rows (by bucket).
ALTER FUNCTION darkroom_submit_many(jsonb) RENAME TO darkroom_submit_each;

CREATE FUNCTION darkroom_submit_many(items jsonb)
RETURNS TABLE (o_item integer, o_outcome text, o_detail text, o_id text, o_state text,
               o_images_total integer, o_credits_charged integer, o_created_at timestamptz,
               o_position integer)
LANGUAGE plpgsql AS $$
DECLARE
  n integer := jsonb_array_length(items);
  depth integer;
  written integer;
  failed boolean;
BEGIN
  PERFORM 1 FROM queue_depth WHERE id = 1 FOR NO KEY UPDATE;
  SELECT queued INTO depth FROM queue_depth WHERE id = 1;
  -- Cheap refusals first: the queue bound, and a batch straddling two rate windows (the
  -- item-by-item function restarts a window mid-batch).
  IF depth IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i)
                      WHERE depth + x.i - 1 >= (x.p->>'max_queued')::integer)
     AND (SELECT count(DISTINCT x.p->>'window_start') FROM jsonb_array_elements(items) AS x(p)) = 1 THEN
    BEGIN
      -- Planned per call (EXECUTE), as 0022's per-user count: a plan cached while tasks was
      -- small may scan every queued task.
      EXECUTE $sql$
        WITH ins AS (
          INSERT INTO tasks (id, user_id, order_id, type, plan, prompt, inputs, params, seed, weight, state, stage,
                             images_total, credits_charged, deadline_at, webhook_url, webhook_stages)
          SELECT p->>'id', p->>'user_id', p->>'order_id', p->>'type', p->>'plan', p->>'prompt', p->'inputs',
                 p->'params', (p->>'seed')::integer, (p->>'weight')::real, 'queued', p->>'stage',
                 (p->>'images_total')::integer, (p->>'credits')::integer,
                 now() + (p->>'deadline_seconds')::integer * interval '1 second',
                 p->>'webhook_url', (p->>'webhook_stages')::boolean
            FROM jsonb_array_elements($1) WITH ORDINALITY AS x(p, i) ORDER BY i
          ON CONFLICT (user_id, order_id) WHERE order_id IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
          RETURNING 1)
        SELECT count(*)::integer FROM ins$sql$ INTO written USING items;
      IF written < n THEN
        RAISE EXCEPTION 'an order is already active' USING ERRCODE = 'DR003';
      END IF;

      INSERT INTO jobs (id, task_id, user_id, step_index, step_name, kind, resource, first_index, count,
                        state, max_attempts, input)
      SELECT j.id, x.p->>'id', x.p->>'user_id', j.step_index, j.step_name, j.kind, j.resource, j.first_index,
             j.count, 'queued', j.max_attempts, j.input
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i),
             jsonb_to_recordset(x.p->'jobs') AS j(id text, step_index int, step_name text, kind text,
               resource text, first_index int, count int, max_attempts int, input jsonb)
       ORDER BY x.i;
      INSERT INTO events (task_id, user_id, type, data)
      SELECT x.p->>'id', x.p->>'user_id', 'queued', '{"state":"queued"}'
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i) ORDER BY i;
      PERFORM pg_notify('darkroom_task', x.p->>'id') FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i);
      PERFORM pg_notify('darkroom_schedule', '');

      -- A user darkroom has not seen gets the grant of its first item (none: the user stays
      -- unknown and its first item is short, checked below). Users that exist are left out before
      -- the insert, which would otherwise wait on any transaction writing their rows before the
      -- batch locks them below, in id order.
      WITH g AS (
        SELECT DISTINCT ON (x.p->>'user_id') x.p->>'user_id' AS user_id, (x.p->>'grant')::integer AS amount
          FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i)
         WHERE NOT EXISTS (SELECT 1 FROM users WHERE users.id = x.p->>'user_id')
         ORDER BY x.p->>'user_id', x.i),
      u AS (INSERT INTO users (id, balance) SELECT user_id, amount FROM g WHERE amount IS NOT NULL ORDER BY user_id
            ON CONFLICT (id) DO NOTHING RETURNING id, balance)
      INSERT INTO credit_ledger (user_id, delta, reason)
      SELECT u.id, u.balance, 'grant' FROM u WHERE u.balance <> 0 ORDER BY u.id;

      -- Each user's balance covers all its items (each item's charge is checked against what the
      -- earlier ones left, so all pass exactly when their sum fits).
      PERFORM 1 FROM users
        WHERE id IN (SELECT x.p->>'user_id' FROM jsonb_array_elements(items) AS x(p))
        ORDER BY id FOR NO KEY UPDATE;
      WITH c AS (
        SELECT x.p->>'user_id' AS user_id, sum((x.p->>'credits')::integer) AS total
          FROM jsonb_array_elements(items) AS x(p) GROUP BY 1),
      charged AS (
        UPDATE users SET balance = users.balance - c.total FROM c
         WHERE users.id = c.user_id AND users.balance >= c.total RETURNING 1)
      SELECT (SELECT count(*) FROM charged) < (SELECT count(*) FROM c) INTO failed;
      IF failed THEN
        RAISE EXCEPTION 'a balance is short' USING ERRCODE = 'DR003';
      END IF;
      INSERT INTO credit_ledger (user_id, task_id, delta, reason)
      SELECT x.p->>'user_id', x.p->>'id', -(x.p->>'credits')::integer, 'charge'
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i) ORDER BY i;

      -- The counts each item would have been given alone: its bucket's (or user's) count after
      -- the batch less the batch's later items of the same bucket (or user).
      EXECUTE $sql$
        WITH x AS (
          SELECT p, i, p->>'user_id' AS user_id,
                 ARRAY(SELECT jsonb_array_elements_text(p->'buckets')) AS buckets
            FROM jsonb_array_elements($1) WITH ORDINALITY AS e(p, i)),
        hits AS (
          SELECT x.i, b.bucket, b.k FROM x, unnest(x.buckets) WITH ORDINALITY AS b(bucket, k)),
        per_bucket AS (
          SELECT bucket, count(*)::integer AS n FROM hits GROUP BY bucket),
        b AS (
          INSERT INTO rate_limits (bucket, window_start, count)
          SELECT pb.bucket, ($1->0->>'window_start')::timestamptz, pb.n FROM per_bucket pb ORDER BY pb.bucket
          ON CONFLICT (bucket) DO UPDATE SET
            count = CASE WHEN EXCLUDED.window_start > rate_limits.window_start THEN EXCLUDED.count
                         ELSE rate_limits.count + EXCLUDED.count END,
            window_start = GREATEST(rate_limits.window_start, EXCLUDED.window_start)
          RETURNING bucket, count),
        item_window AS (
          SELECT h.i, h.k,
                 b.count - (count(*) OVER (PARTITION BY h.bucket ORDER BY h.i DESC) - 1) AS n
            FROM hits h JOIN b ON b.bucket = h.bucket),
        per_user AS (
          SELECT u.user_id, (SELECT count(*) FROM tasks WHERE user_id = u.user_id AND state = 'queued') AS n
            FROM (SELECT DISTINCT user_id FROM x) u),
        item_user AS (
          SELECT x.i, pu.n - (count(*) OVER (PARTITION BY x.user_id ORDER BY x.i DESC) - 1) AS n
            FROM x JOIN per_user pu ON pu.user_id = x.user_id)
        SELECT EXISTS (
          SELECT 1 FROM x
            JOIN item_user iu ON iu.i = x.i
            LEFT JOIN item_window uw ON uw.i = x.i AND uw.k = 1
            LEFT JOIN item_window kw ON kw.i = x.i AND kw.k = 2
           WHERE iu.n > (x.p->>'per_user_queued')::integer
              OR uw.n > (x.p->>'user_per_minute')::integer
              OR kw.n > (x.p->>'key_per_minute')::integer)$sql$ INTO failed USING items;
      IF failed THEN
        RAISE EXCEPTION 'an item is over a limit' USING ERRCODE = 'DR003';
      END IF;

      UPDATE queue_depth SET queued = queued + n WHERE id = 1;
      INSERT INTO task_forecasts (task_id, position, start_at, finish_at, basis, forecast_at)
      SELECT x.p->>'id', depth + x.i - 1, to_timestamp((x.p->>'start_ms')::float8 / 1000),
             to_timestamp((x.p->>'finish_ms')::float8 / 1000), 'submit', now()
        FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i) ORDER BY i
      ON CONFLICT (task_id) DO NOTHING;

      RETURN QUERY
        SELECT (x.i - 1)::integer, 'queued'::text, NULL::text, t.id, t.state, t.images_total,
               t.credits_charged, t.created_at, (depth + x.i - 1)::integer
          FROM jsonb_array_elements(items) WITH ORDINALITY AS x(p, i)
          JOIN tasks t ON t.id = x.p->>'id'
         ORDER BY x.i;
      RETURN;
    EXCEPTION
      WHEN SQLSTATE 'DR003' THEN
        NULL;
    END;
  END IF;
  RETURN QUERY SELECT * FROM darkroom_submit_each(items);
END
$$;
