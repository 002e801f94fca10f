//! The leases of control-plane replicas on the runs they receive.
//!
//! A run's stream is read by the replica that accepted it; if that replica dies (kill -9, its
//! node lost), nobody will ever end the run. So every replica writes a heartbeat to the run
//! store and, at each beat, fails the runs still receiving whose replica has been silent for
//! longer than the lease (`leases.expiry_secs`): `STREAM_INCOMPLETE`, and their pending uploads
//! are aborted like any failed run's. The client's retry with the same idempotency key then
//! starts a new attempt.

use crate::config::LeaseConfig;
use crate::planner::Planner;
use crate::store::{RunStore, now_ms};
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Beats for `replica_id` and fails orphaned runs every `leases.heartbeat_secs` until shutdown.
pub async fn keep(
    store: RunStore,
    planner: Arc<Planner>,
    replica_id: String,
    leases: LeaseConfig,
    shutdown: Shutdown,
) {
    let beat = Duration::from_secs(leases.heartbeat_secs.max(1));
    let expiry_ms = i64::try_from(leases.expiry_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    loop {
        if let Err(error) = store.heartbeat(&replica_id).await {
            warn!(%error, "could not write this replica's heartbeat");
        }
        if let Err(error) = fail_orphans(&store, &planner, expiry_ms, leases.expiry_secs).await {
            warn!(%error, "could not look for runs whose replica stopped");
        }
        tokio::select! {
            () = tokio::time::sleep(beat) => {}
            () = shutdown.wait() => return,
        }
    }
}

async fn fail_orphans(
    store: &RunStore,
    planner: &Planner,
    expiry_ms: i64,
    expiry_secs: u64,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let alive_since = now_ms().saturating_sub(expiry_ms);
    for run_id in store.orphaned_receiving_runs(alive_since).await? {
        info!(
            run_id,
            "the replica receiving this run's stream stopped; failing it"
        );
        planner
            .fail_run(&run_id, &orphaned(expiry_secs))
            .await
            .map_err(Box::new)?;
    }
    // Long-silent replicas hold no lease worth keeping a row for.
    store
        .forget_replicas(alive_since.saturating_sub(expiry_ms.saturating_mul(10)))
        .await?;
    Ok(())
}

/// The failure of a run whose receiving replica stopped.
fn orphaned(expiry_secs: u64) -> RunFailure {
    RunFailure::new(
        ErrorCode::StreamIncomplete,
        format!(
            "the export was not committed, and nothing was delivered: the control plane \
             receiving its stream stopped (silent for over {expiry_secs} s); send the export \
             again (with the same idempotency key, it is a new attempt)"
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_orphaned_run_is_to_be_sent_again() {
        let failure = super::orphaned(30);
        assert_eq!(
            failure.code,
            filedrop_proto::v1::ErrorCode::StreamIncomplete
        );
        assert!(
            failure.message.contains("silent for over 30 s"),
            "{}",
            failure.message
        );
        assert_eq!(
            failure.resolutions,
            [filedrop_proto::v1::Resolution::SendAgain]
        );
    }
}
