-- AIMD decreases once per congestion event: the end of the current one, per provider.
ALTER TABLE provider_state ADD COLUMN congestion_until timestamptz;
