-- Task webhooks, fed by the events outbox: an event a task's webhook wants becomes a delivery
-- row in the same transaction (a trigger), so no committed event can miss its delivery.
ALTER TABLE tasks ADD COLUMN webhook_url text;
-- Also deliver `running` and `stage` events, not only the terminal one.
ALTER TABLE tasks ADD COLUMN webhook_stages boolean NOT NULL DEFAULT false;

CREATE TABLE webhook_deliveries (
  -- The Standard Webhooks `webhook-id`: the same on every attempt.
  id               text PRIMARY KEY,
  task_id          text NOT NULL,
  event_id         bigint NOT NULL,
  event_type       text NOT NULL,
  url              text NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  lease_token      integer NOT NULL DEFAULT 0,
  locked_until     timestamptz,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- The signed body, built at the first attempt and sent unchanged on every retry.
  payload          text,
  last_status      integer,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_task ON webhook_deliveries (task_id, event_id);
CREATE INDEX webhook_deliveries_recent ON webhook_deliveries (created_at);

CREATE FUNCTION darkroom_event_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t record;
BEGIN
  IF NEW.type NOT IN ('finished', 'running', 'stage') THEN
    RETURN NULL;
  END IF;
  SELECT webhook_url, webhook_stages INTO t FROM tasks WHERE id = NEW.task_id;
  IF t.webhook_url IS NULL OR (NEW.type <> 'finished' AND NOT t.webhook_stages) THEN
    RETURN NULL;
  END IF;
  INSERT INTO webhook_deliveries (id, task_id, event_id, event_type, url)
  VALUES ('msg_' || NEW.task_id || '_' || NEW.id, NEW.task_id, NEW.id, 'task.' || NEW.type, t.webhook_url);
  PERFORM pg_notify('darkroom_webhook', '');
  RETURN NULL;
END
$$;

CREATE TRIGGER events_webhook AFTER INSERT ON events
  FOR EACH ROW EXECUTE FUNCTION darkroom_event_webhook();
