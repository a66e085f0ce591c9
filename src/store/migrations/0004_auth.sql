-- Auth: API keys (only a hash is kept), the token signing secret shared by every API process,
-- submit rate-limit counters, upload ownership, and task retries as numbered attempts.

CREATE TABLE api_keys (
  id            text PRIMARY KEY,          -- public prefix of the key, shown by `darkroom keys list`
  name          text NOT NULL,
  scope         text NOT NULL CHECK (scope IN ('app', 'admin')),
  key_hash      text NOT NULL UNIQUE,      -- SHA-256 (hex) of the whole key; the key itself is never stored
  created_at    timestamptz NOT NULL DEFAULT now(),
  last_used_at  timestamptz,
  revoked_at    timestamptz
);

-- One row per secret name; generated once, so every API process on this database signs alike.
CREATE TABLE auth_secrets (
  name        text PRIMARY KEY,
  secret      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Fixed-window submit counters, one row per bucket (`user:<id>`, `key:<id>`), reset when the window moves.
CREATE TABLE rate_limits (
  bucket        text PRIMARY KEY,
  window_start  timestamptz NOT NULL,
  count         integer NOT NULL
);

-- The user whose token uploaded the image (NULL: uploaded with an app or admin key).
ALTER TABLE uploads ADD COLUMN user_id text;

-- A retried task runs again as attempt 2, 3, …: charges and refunds are once per task, reason and attempt.
ALTER TABLE tasks ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE credit_ledger ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE credit_ledger ADD COLUMN note text;
DROP INDEX credit_ledger_once_per_task;
CREATE UNIQUE INDEX credit_ledger_once_per_task ON credit_ledger (task_id, reason, attempt) WHERE task_id IS NOT NULL;
