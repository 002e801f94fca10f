-- Runs, their staged segments and their files. Times are Unix milliseconds.
CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    state             TEXT NOT NULL,
    -- The ExportRequest, sealed: it holds the destination's secret.
    sealed_request    BLOB NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    rows              INTEGER NOT NULL DEFAULT 0,
    -- Set when the stream has ended.
    segment_count     INTEGER,
    arrow_schema      BLOB,
    error_code        INTEGER,
    error_message     TEXT,
    -- Resolution enum values, comma-separated.
    error_resolutions TEXT
);

CREATE TABLE segments (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    segment_index INTEGER NOT NULL,
    row_offset    INTEGER NOT NULL,
    row_count     INTEGER NOT NULL,
    encoded       INTEGER NOT NULL DEFAULT 0,
    block_size    INTEGER,
    PRIMARY KEY (run_id, segment_index)
);

CREATE TABLE files (
    run_id      TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    file_number INTEGER NOT NULL,
    object_key  TEXT NOT NULL,
    uploaded    INTEGER NOT NULL DEFAULT 0,
    size        INTEGER,
    PRIMARY KEY (run_id, file_number)
);
