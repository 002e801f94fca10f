-- The sizes of a segment's blocks when a split by size made it several blocks, comma-separated
-- in order; NULL when the segment is one block of `block_size` bytes.
ALTER TABLE segments ADD COLUMN block_sizes TEXT;
