-- The scheduler reads users in fair-share order (store/schedule.ts readFairOrder): tasks that
-- have not started, per fair-share class (plan weight, images left) in creation order, so a
-- k-way merge over the few classes yields them by the lower bound of their user's score.
CREATE INDEX tasks_queued_fair ON tasks (weight, (images_total - images_done - images_failed), created_at)
  WHERE state = 'queued' AND NOT cancel_requested AND attempt = 1;
