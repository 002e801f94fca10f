-- What the manifest lists: each block's rows (with several blocks, comma-separated in order;
-- NULL when the segment is one block holding all its rows), each file's rows, and the SHA-256
-- of each delivered object.
ALTER TABLE segments ADD COLUMN block_rows TEXT;
ALTER TABLE files ADD COLUMN rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN sha256 TEXT;
