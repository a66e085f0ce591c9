-- darkroom's first schema: tasks fan out into jobs; credits, events and leases in the same database
-- so that charging, enqueueing and finishing are each one transaction.

CREATE TABLE users (
  id          text PRIMARY KEY,
  balance     integer NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Every change of a balance, with its reason. A task is charged once and refunded at most once.
CREATE TABLE credit_ledger (
  id          bigserial PRIMARY KEY,
  user_id     text NOT NULL REFERENCES users (id),
  task_id     text,
  delta       integer NOT NULL,
  reason      text NOT NULL CHECK (reason IN ('grant', 'charge', 'refund', 'adjust')),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX credit_ledger_once_per_task ON credit_ledger (task_id, reason) WHERE task_id IS NOT NULL;
CREATE INDEX credit_ledger_user ON credit_ledger (user_id, id);

CREATE TABLE uploads (
  id           text PRIMARY KEY,
  storage_key  text NOT NULL,
  mime         text NOT NULL,
  width        integer NOT NULL,
  height       integer NOT NULL,
  bytes        integer NOT NULL,
  sha256       text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasks (
  id                text PRIMARY KEY,
  user_id           text NOT NULL,
  order_id          text,
  type              text NOT NULL,
  plan              text NOT NULL,
  prompt            text NOT NULL DEFAULT '',
  inputs            jsonb NOT NULL DEFAULT '[]',
  params            jsonb NOT NULL DEFAULT '{}',
  seed              integer NOT NULL,
  weight            real NOT NULL,
  state             text NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'partial', 'failed', 'canceled')),
  stage             text,
  images_total      integer NOT NULL,
  images_done       integer NOT NULL DEFAULT 0,
  images_failed     integer NOT NULL DEFAULT 0,
  credits_charged   integer NOT NULL,
  credits_refunded  integer NOT NULL DEFAULT 0,
  cancel_requested  boolean NOT NULL DEFAULT false,
  error             text,
  deadline_at       timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
-- The source documents' rule: an order has at most one queued or running task.
CREATE UNIQUE INDEX tasks_one_active_per_order ON tasks (user_id, order_id)
  WHERE order_id IS NOT NULL AND state IN ('queued', 'running');
CREATE INDEX tasks_user_recent ON tasks (user_id, id DESC);
CREATE INDEX tasks_active ON tasks (state, created_at) WHERE state IN ('queued', 'running');

CREATE TABLE idempotency_keys (
  key           text PRIMARY KEY,
  request_hash  text NOT NULL,
  status_code   integer NOT NULL,
  response      jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- One unit the scheduler admits: a provider call (transform or a generate batch) or storing one image.
CREATE TABLE jobs (
  id                text PRIMARY KEY,
  task_id           text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  user_id           text NOT NULL,
  step_index        integer NOT NULL,
  step_name         text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('transform', 'generate', 'store')),
  resource          text NOT NULL,
  first_index       integer NOT NULL,
  count             integer NOT NULL,
  state             text NOT NULL CHECK (state IN ('queued', 'admitted', 'running', 'succeeded', 'failed', 'canceled')),
  key_id            text,
  attempts          integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL,
  run_after         timestamptz NOT NULL DEFAULT now(),
  admitted_at       timestamptz,
  admitted_term     bigint,
  lease_token       integer NOT NULL DEFAULT 0,
  lease_expires_at  timestamptz,
  worker_id         text,
  started_at        timestamptz,
  finished_at       timestamptz,
  remote_ref        text,
  input             jsonb NOT NULL DEFAULT '{}',
  output            jsonb,
  error             text,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_queued ON jobs (run_after) WHERE state = 'queued';
CREATE INDEX jobs_admitted ON jobs (admitted_at) WHERE state = 'admitted';
CREATE INDEX jobs_in_flight ON jobs (resource, key_id) WHERE state IN ('admitted', 'running');
CREATE INDEX jobs_task ON jobs (task_id, state);

-- Sliding-window log of provider requests per key: the RPM limit is checked against it.
CREATE TABLE key_requests (
  id           bigserial PRIMARY KEY,
  provider     text NOT NULL,
  key_id       text NOT NULL,
  job_id       text NOT NULL,
  admitted_at  timestamptz NOT NULL,
  started_at   timestamptz
);
CREATE INDEX key_requests_window ON key_requests (provider, key_id, admitted_at);
CREATE INDEX key_requests_job ON key_requests (job_id);

-- Adaptive state: per provider (key_id = '') the AIMD concurrency; per key the 429 cool-down.
CREATE TABLE provider_state (
  provider               text NOT NULL,
  key_id                 text NOT NULL,
  effective_concurrency  real,
  success_streak         integer NOT NULL DEFAULT 0,
  cooldown_until         timestamptz,
  rate_limited_total     integer NOT NULL DEFAULT 0,
  updated_at             timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, key_id)
);

CREATE TABLE images (
  task_id       text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  index         integer NOT NULL,
  storage_key   text NOT NULL,
  thumb_key     text NOT NULL,
  mime          text NOT NULL,
  width         integer NOT NULL,
  height        integer NOT NULL,
  thumb_width   integer NOT NULL,
  thumb_height  integer NOT NULL,
  bytes         integer NOT NULL,
  sha256        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (task_id, index)
);

-- The outbox: every visible change of a task, in order. SSE and webhooks read from here.
CREATE TABLE events (
  id          bigserial PRIMARY KEY,
  task_id     text NOT NULL,
  user_id     text NOT NULL,
  type        text NOT NULL,
  data        jsonb NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_task ON events (task_id, id);

-- Leader election: one row, a lease stamped with the database's clock and a term that fences writes.
CREATE TABLE scheduler_leader (
  id          integer PRIMARY KEY CHECK (id = 1),
  holder      text NOT NULL,
  term        bigint NOT NULL,
  expires_at  timestamptz NOT NULL
);

CREATE TABLE workers (
  id            text PRIMARY KEY,
  host          text NOT NULL,
  pid           integer NOT NULL,
  roles         text NOT NULL,
  slots         integer NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  stopping      boolean NOT NULL DEFAULT false
);
