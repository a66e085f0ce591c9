-- A key's default task webhook: a submit made with the key (or with a user token it issued) that
-- names no `webhook_url` is delivered here. Checked by the SSRF rules when the key is created.
ALTER TABLE api_keys ADD COLUMN webhook_url text;
