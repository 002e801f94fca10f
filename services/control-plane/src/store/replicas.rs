//! Control-plane replicas' heartbeats, and receiving runs whose replica stopped.

use super::states::state_in;
use super::{RunStore, StoreError, now_ms, query};
use filedrop_proto::v1::RunState;
use sqlx::Row;

impl RunStore {
    /// Records that the replica `replica_id` is alive now (its lease on the runs it receives).
    pub async fn heartbeat(&self, replica_id: &str) -> Result<(), StoreError> {
        query(
            "INSERT INTO replicas (replica_id, heartbeat_at) VALUES (?, ?) \
             ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(replica_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Runs still receiving whose replica has not beaten since `alive_since` (Unix ms), or
    /// that no replica holds: nobody reads their streams any more.
    pub async fn orphaned_receiving_runs(
        &self,
        alive_since: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = query(&format!(
            "SELECT r.run_id FROM runs r WHERE r.{} AND NOT EXISTS \
             (SELECT 1 FROM replicas p WHERE p.replica_id = r.receiver \
              AND p.heartbeat_at >= ?)",
            state_in(&[RunState::Receiving])
        ))
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|row| row.get("run_id")).collect())
    }

    /// Forgets replicas silent since `silent_since` (Unix ms): their rows serve no lease.
    pub async fn forget_replicas(&self, silent_since: i64) -> Result<(), StoreError> {
        query("DELETE FROM replicas WHERE heartbeat_at < ?")
            .bind(silent_since)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
