-- Admin retry (POST /v1/admin/tasks/:id/retry): a failed or partial task runs the images it did
-- not deliver again as attempt 2, 3, … (tasks.attempt, credit_ledger.attempt: 0004).

-- What the current attempt runs and was charged: its refund is the share of ITS charge for the
-- images it did not deliver. NULL on attempt 1: all images, credits_charged.
ALTER TABLE tasks ADD COLUMN attempt_images integer;
ALTER TABLE tasks ADD COLUMN attempt_credits integer;

-- A retried task is queued with jobs of whichever step it resumes at, not only of its pipeline's
-- first step: the scheduler's bounded read (store/schedule.ts readQueueHead) finds them here.
CREATE INDEX tasks_queued_retried ON tasks (user_id, created_at, id COLLATE "C")
  WHERE state = 'queued' AND attempt > 1 AND NOT cancel_requested;

-- A task webhook also hears of a retry (`task.retried`): its receiver saw the task end before.
CREATE OR REPLACE FUNCTION darkroom_event_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t record;
BEGIN
  IF NEW.type NOT IN ('finished', 'retried', 'running', 'stage') THEN
    RETURN NULL;
  END IF;
  SELECT webhook_url, webhook_stages INTO t FROM tasks WHERE id = NEW.task_id;
  IF t.webhook_url IS NULL OR (NEW.type IN ('running', 'stage') AND NOT t.webhook_stages) THEN
    RETURN NULL;
  END IF;
  INSERT INTO webhook_deliveries (id, task_id, event_id, event_type, url)
  VALUES ('msg_' || NEW.task_id || '_' || NEW.id, NEW.task_id, NEW.id, 'task.' || NEW.type, t.webhook_url);
  PERFORM pg_notify('darkroom_webhook', '');
  RETURN NULL;
END
$$;
