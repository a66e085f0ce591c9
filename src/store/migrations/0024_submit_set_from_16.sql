-- Batches under 16 submits go item by item again (0022's darkroom_submit_each). The set-based
-- write (0023, now darkroom_submit_set) plans two statements on every call (EXECUTE), a fixed
-- cost that a small batch does not repay: calling each function alone with batches of n new
-- users, alternating (load 33-35), p50 / best per submit, item by item against set-based:
-- n = 1: 11.8-14.0 / 2.2-2.7 against 25.3-33.6 / 5.1-9.1 ms; n = 4: 4.9-8.5 / 1.4-3.0 against
-- 9.3-10.0 / 2.2-5.3 ms; n = 8: 4.0-6.2 / 1.6-2.1 against 6.1-8.4 / 2.2-4.6 ms; n = 16:
-- 4.8-6.0 / 1.8-2.6 against 2.5-4.7 / 1.6-2.0 ms; n = 32: 3.8-8.1 / 1.5-3.4 against 1.3-1.6 /
-- 0.5-0.6 ms (docs/benchmarks.md).
ALTER FUNCTION darkroom_submit_many(jsonb) RENAME TO darkroom_submit_set;

CREATE FUNCTION darkroom_submit_many(items jsonb)
RETURNS TABLE (o_item integer, o_outcome text, o_detail text, o_id text, o_state text,
               o_images_total integer, o_credits_charged integer, o_created_at timestamptz,
               o_position integer)
LANGUAGE plpgsql AS $$
BEGIN
  IF jsonb_array_length(items) < 16 THEN
    RETURN QUERY SELECT * FROM darkroom_submit_each(items);
  ELSE
    RETURN QUERY SELECT * FROM darkroom_submit_set(items);
  END IF;
END
$$;
