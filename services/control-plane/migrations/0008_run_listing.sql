-- Listing runs by destination, and exports made safe to send again: a tenant's idempotency
-- key names one run at most.
ALTER TABLE runs ADD COLUMN destination_name TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_tenant ON runs (tenant_id, run_id);
