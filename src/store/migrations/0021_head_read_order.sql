-- A user's oldest ready job (store/schedule.ts readQueueHead, the aging read) in the read's own
-- order, run_after then id: a LIMIT 1 walks the index and stops at the first usable job. With
-- (user_id, run_after) alone the tie on id was a sort of every queued job of the user (PostgreSQL
-- 15 without statistics plans a full sort, not an incremental one).
DROP INDEX jobs_queued_by_user;
CREATE INDEX jobs_queued_by_user ON jobs (user_id, run_after, id) WHERE state = 'queued';
