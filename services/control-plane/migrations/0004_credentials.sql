-- Stored credentials. An iam-role-to-role credential is the bucket owner's role and the
-- External ID filedrop generated for it; it holds no secret.
CREATE TABLE credentials (
    credential_id TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    role_arn      TEXT NOT NULL,
    external_id   TEXT NOT NULL,
    -- Unix milliseconds.
    created_at    INTEGER NOT NULL
);
