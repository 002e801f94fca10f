-- Control-plane replicas and the runs whose streams they read. A replica writes its heartbeat
-- every few seconds; a run still receiving whose replica stopped beating (killed, its node
-- lost) is failed by any live replica, so that no run waits forever for a stream nobody reads.
CREATE TABLE replicas (
    replica_id   TEXT PRIMARY KEY,
    -- Unix milliseconds.
    heartbeat_at INTEGER NOT NULL
);

ALTER TABLE runs ADD COLUMN receiver TEXT;
