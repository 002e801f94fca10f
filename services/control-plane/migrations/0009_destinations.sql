-- Stored destinations: a tenant's named export settings (an ExportRequest, protobuf). They
-- hold no secret: an access key is stored as a credential and named by its id.
CREATE TABLE destinations (
    destination_id TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    settings       BLOB NOT NULL,
    -- Unix milliseconds.
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);
