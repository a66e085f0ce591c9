import type pg from 'pg';

/**
 * The auditor's own history, kept by triggers in the chaos run's database (never in darkroom's
 * migrations): darkroom's tables keep only the latest state of a job and prune key_requests, so
 * the auditor records every leader-row change and every job state change as it happens, stamped
 * with the database clock at the moment the trigger runs (`clock_timestamp()`).
 */
export const AUDIT_SCHEMA = `
CREATE TABLE chaos_leader_log (
  id          bigserial PRIMARY KEY,
  holder      text NOT NULL,
  term        bigint NOT NULL,
  expires_at  timestamptz NOT NULL,
  at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos_leader_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The fence's no-op update (SET term = term) changes nothing worth logging.
  IF TG_OP = 'UPDATE' AND NEW.holder = OLD.holder AND NEW.term = OLD.term AND NEW.expires_at = OLD.expires_at THEN
    RETURN NULL;
  END IF;
  INSERT INTO chaos_leader_log (holder, term, expires_at) VALUES (NEW.holder, NEW.term, NEW.expires_at);
  RETURN NULL;
END $$;
CREATE TRIGGER chaos_leader_log AFTER INSERT OR UPDATE ON scheduler_leader
  FOR EACH ROW EXECUTE FUNCTION chaos_leader_log();

CREATE TABLE chaos_job_log (
  id             bigserial PRIMARY KEY,
  job_id         text NOT NULL,
  task_id        text NOT NULL,
  kind           text NOT NULL,
  old_state      text,
  new_state      text NOT NULL,
  attempts       integer NOT NULL,
  lease_token    integer NOT NULL,
  key_id         text,
  admitted_term  bigint,
  -- The leader row as this transaction sees it (the admission statement holds its lock).
  leader_holder  text,
  leader_term    bigint,
  leader_expires timestamptz,
  at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos_job_log() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lh text;
  lt bigint;
  le timestamptz;
BEGIN
  IF NEW.state = 'admitted' THEN
    SELECT holder, term, expires_at INTO lh, lt, le FROM scheduler_leader WHERE id = 1;
  END IF;
  INSERT INTO chaos_job_log (job_id, task_id, kind, old_state, new_state, attempts, lease_token, key_id,
                             admitted_term, leader_holder, leader_term, leader_expires)
  VALUES (NEW.id, NEW.task_id, NEW.kind, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state,
          NEW.attempts, NEW.lease_token, NEW.key_id, NEW.admitted_term, lh, lt, le);
  RETURN NULL;
END $$;
CREATE TRIGGER chaos_job_log_insert AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION chaos_job_log();
CREATE TRIGGER chaos_job_log_update AFTER UPDATE OF state ON jobs
  FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION chaos_job_log();
`;

export async function installAuditLog(client: pg.Pool): Promise<void> {
  await client.query(AUDIT_SCHEMA);
}
