-- Optional per-step result cache: the same provider, model, prompt, params, seed and input
-- content reuse stored images without a provider call.
CREATE TABLE result_cache (
  cache_key     text PRIMARY KEY,
  storage_keys  jsonb NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE images ADD COLUMN cached boolean NOT NULL DEFAULT false;
