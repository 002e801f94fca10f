//! The staging sweep: what ended runs left in staging, and failed runs kept longer than
//! `staging.keep_failed_hours`.

use super::{PlanError, Planner};
use crate::messages::Cleanup;
use filedrop_proto::v1::RunState;
use filedrop_runtime::shutdown::Shutdown;
use filedrop_runtime::staging::uploads_of_run;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

impl Planner {
    /// Sweeps staging every `interval` until `shutdown`: deletes what ended runs left (blocks
    /// written by a task that finished after its run ended), the staging of failed runs kept
    /// longer than `keep_failed`, and stop marks older than that (at least an hour: a task
    /// redelivered late must still find its run stopped). An ended run whose staging still
    /// records uploads (a cleanup that did not finish, a task that finished late) has them
    /// taken back first; its staging goes at a later sweep.
    pub async fn sweep_staging(self: Arc<Self>, interval: Duration, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = shutdown.wait() => return,
            }
            if let Err(error) = self.sweep_once().await {
                warn!(%error, "staging sweep failed; trying again later");
            }
        }
    }

    async fn sweep_once(&self) -> Result<(), PlanError> {
        let staged = self
            .staging
            .staged_runs()
            .await
            .map_err(PlanError::Staging)?;
        let now = chrono::Utc::now().timestamp_millis();
        let keep_marks = self.keep_failed.max(Duration::from_secs(3600));
        for run_id in staged.runs {
            let Some(run) = self.store.get_run(&run_id).await? else {
                continue;
            };
            let failed_for = Duration::from_millis(now.saturating_sub(run.updated_at) as u64);
            let ended = match run.state {
                RunState::Succeeded | RunState::Cancelled => true,
                RunState::Failed => !self.keeps_staging(&run) || failed_for > self.keep_failed,
                _ => false,
            };
            if !ended {
                continue;
            }
            let recorded = self
                .staging
                .list(&uploads_of_run(&run_id))
                .await
                .map_err(PlanError::Staging)?;
            // Asked for until the run has been over longer than stop marks are kept: a
            // cleanup that can never finish (a credential deleted) does not keep staging.
            if !recorded.is_empty() && failed_for < keep_marks {
                let cleanup = match run.state {
                    RunState::Succeeded => Cleanup::PendingOnly,
                    RunState::Cancelled => Cleanup::Cancelled,
                    _ => Cleanup::Failed {
                        delete_staging: true,
                    },
                };
                info!(run_id, state = ?run.state, uploads = recorded.len(), "sweep: an ended run's uploads are taken back");
                if self.clean_up(&run, cleanup).await? {
                    continue;
                }
            }
            info!(run_id, state = ?run.state, "sweep: deleting an ended run's staging");
            self.delete_staging(&run_id).await;
        }
        for (run_id, age) in staged.stop_marks {
            if age > keep_marks {
                self.staging
                    .clear_stopped(&run_id)
                    .await
                    .map_err(PlanError::Staging)?;
            }
        }
        Ok(())
    }
}
