-- iam-credential: a stored access key. Its key id is kept in clear (it is shown), the whole
-- key — secret, session token, role and External ID — sealed with the secrets key.
ALTER TABLE credentials ADD COLUMN access_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN sealed_key BLOB;
