-- Tenants. Every run and credential belongs to one; an API token (kept as its SHA-256, never
-- in clear) names the tenant of the requests that carry it.
CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    -- Unix milliseconds.
    created_at INTEGER NOT NULL
);

-- Rows from before tenants belong to none: no token reaches them.
ALTER TABLE runs ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
ALTER TABLE credentials ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
