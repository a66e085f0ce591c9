-- AIMD decreases once per congestion event: the end of the current one, per provider.
ALTER TABLE provider_state ADD COLUMN congestion_until timestamptz;

-- The bounded scheduler read (store/schedule.ts readQueueHead): per user, queued tasks in the
-- order the policy starts them (ids compared as JavaScript compares them), and queued jobs by
-- readiness (a user's oldest ready job sets its aging).
CREATE INDEX tasks_queued_by_user ON tasks (user_id, created_at, id COLLATE "C")
  WHERE state = 'queued' AND NOT cancel_requested;
CREATE INDEX jobs_queued_by_user ON jobs (user_id, run_after) WHERE state = 'queued';
