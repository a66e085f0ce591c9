-- Alerts: one row per firing episode of a rule on a subject (`key`: the provider, or '' for
-- installation-wide rules). At most one firing row per rule and key: that is the de-duplication.
CREATE TABLE alerts (
  id           bigserial PRIMARY KEY,
  rule         text NOT NULL,
  key          text NOT NULL,
  state        text NOT NULL CHECK (state IN ('firing', 'resolved')),
  value        double precision NOT NULL,
  threshold    double precision NOT NULL,
  summary      text NOT NULL,
  fired_at     timestamptz NOT NULL,
  resolved_at  timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX alerts_one_firing ON alerts (rule, key) WHERE state = 'firing';
CREATE INDEX alerts_recent ON alerts (fired_at DESC);

-- One message per alert transition (firing, resolved) and configured channel, sent with retries.
CREATE TABLE alert_notifications (
  id               bigserial PRIMARY KEY,
  alert_id         bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
  kind             text NOT NULL CHECK (kind IN ('firing', 'resolved')),
  channel          text NOT NULL,
  channel_type     text NOT NULL,
  state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL DEFAULT now(),
  -- Set while a sender holds the notification: no second sender picks it up meanwhile.
  locked_until     timestamptz,
  last_error       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  delivered_at     timestamptz
);
CREATE INDEX alert_notifications_due ON alert_notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_notifications_alert ON alert_notifications (alert_id);
