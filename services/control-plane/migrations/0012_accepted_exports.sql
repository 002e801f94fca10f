-- The export as it was accepted (the validated settings and what was derived from them with
-- the stream's schema), sealed: the planner reads it back rather than validating the request
-- again, so a rule added in a later release never fails a run an earlier one accepted. NULL
-- for runs accepted before it was kept.
ALTER TABLE runs ADD COLUMN sealed_spec BLOB;
