-- What each succeeded run made visible, so that a later run writing the same keys at the same
-- place (endpoint and bucket: `location`) can delete what it does not rewrite, only if still
-- unchanged (by entity tag). A run replaced so is marked, and not considered again.
CREATE TABLE delivered_objects (
    run_id     TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    location   TEXT NOT NULL,
    object_key TEXT NOT NULL,
    e_tag      TEXT NOT NULL,
    PRIMARY KEY (run_id, object_key)
);
CREATE INDEX delivered_objects_by_key ON delivered_objects (location, object_key);

ALTER TABLE runs ADD COLUMN superseded_by TEXT;
