-- When the current attempt's provider answer arrived (every request of the call answered, success
-- or failure). A provider's and a key's concurrency limit counts requests open at the provider,
-- so a running job whose answer is in no longer counts there, while its decode, staging writes
-- and outcome go on (it still holds its worker slot). The claim clears it: a retried attempt
-- makes new requests and counts again until its own answer.
ALTER TABLE jobs ADD COLUMN provider_done_at timestamptz;
