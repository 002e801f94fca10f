-- Partitioned exports: each partition's values, and which partition a segment and a file
-- belong to. A run that is not partitioned has one partition, 0, and no row here.
CREATE TABLE partitions (
    run_id          TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    partition_index INTEGER NOT NULL,
    -- The partition's key text, one per partition column in order, as a JSON array.
    key_values      TEXT NOT NULL,
    PRIMARY KEY (run_id, partition_index)
);

-- A segment's rows all belong to one partition; `row_offset` counts within it.
ALTER TABLE segments ADD COLUMN partition_index INTEGER NOT NULL DEFAULT 0;

-- A file's number within its partition (what `{{file_number}}` renders); `file_number` stays
-- the file's number in the run, which tasks and events name it by.
ALTER TABLE files ADD COLUMN partition_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN number_in_partition INTEGER;
