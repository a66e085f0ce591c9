-- Retention of finished work (src/store/retention.ts, run by the scheduler leader).
--
-- A finished task first loses its events and jobs (details only the live stream, webhooks and
-- the admin history read), later the task itself with its images. `details_pruned` marks the
-- first step done, so each pass walks only tasks it has not handled yet (the partial index); an
-- admin retry (reopenTask) clears it, so the retry's own events and jobs are pruned in turn.
ALTER TABLE tasks ADD COLUMN details_pruned boolean NOT NULL DEFAULT false;
CREATE INDEX tasks_details_unpruned ON tasks (finished_at)
  WHERE finished_at IS NOT NULL AND NOT details_pruned;

-- Result cache entries expire by age.
CREATE INDEX result_cache_created ON result_cache (created_at);

-- Files whose rows retention deleted, to be removed from storage. Written in the statement that
-- deletes the rows, removed once the file is gone: a crash or a storage error in between leaves
-- the key here for the next pass, never an orphaned file nobody knows about.
CREATE TABLE storage_garbage (
  storage_key  text PRIMARY KEY,
  created_at   timestamptz NOT NULL DEFAULT now()
);
