-- The newest successful jobs of a resource, for the mean durations the ETA forecast reads
-- (src/store/stats.ts): without it each read scans every finished job of the resource.
CREATE INDEX jobs_recent_success ON jobs (resource, finished_at DESC) WHERE state = 'succeeded';
