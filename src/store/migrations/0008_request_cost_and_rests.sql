-- Requests a job makes (a batch on a model that returns one image per request is one request per
-- image), written at admission: in-flight limits and the key_requests log count requests, not jobs.
ALTER TABLE jobs ADD COLUMN requests integer NOT NULL DEFAULT 1;
-- Rate-limited attempts do not spend an attempt; these bound them (worker.maxRateLimitedRetries / WaitMs).
ALTER TABLE jobs ADD COLUMN rate_limited integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN first_rate_limited_at timestamptz;
-- Why a key rests until cooldown_until (e.g. a per-day quota), for /v1/admin/providers.
ALTER TABLE provider_state ADD COLUMN cooldown_reason text;
-- 429s without a retry hint in a row on a key: each doubles its rest (src/policy/rests.ts).
ALTER TABLE provider_state ADD COLUMN unhinted_streak integer NOT NULL DEFAULT 0;
