//! A run's end other than success: failing it, cancelling it, retrying a failed one, and the
//! cleanup task that takes back what an ended run uploaded.

use super::{PlanError, Planner};
use crate::acceptance::AcceptedExport;
use crate::messages::{self, Cleanup};
use crate::store::{NewSegment, RunRecord, StoreError, is_final};
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::RunState;
use filedrop_runtime::broker::Queue;
use filedrop_runtime::staging::Stopped;
use tracing::{info, warn};

/// Why a run cannot be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRetryable {
    /// It has not failed: it is in this state.
    NotFailed(RunState),
    /// It failed while its stream was being received: nothing complete is staged.
    FailedReceiving,
    /// Its staged data is no longer kept.
    StagingGone,
}

impl Planner {
    /// Fails a run and has what it uploaded taken back: its pending uploads aborted, and what
    /// a commit under way completed deleted. Its staging is kept for a retry when the whole
    /// stream was received (see `keep_failed`), deleted otherwise (by the cleanup, which needs
    /// the records of the uploads first).
    pub async fn fail_run(&self, run_id: &str, failure: &RunFailure) -> Result<(), PlanError> {
        if !self.store.fail(run_id, failure).await? {
            return Ok(());
        }
        warn!(run_id, code = ?failure.code, message = %failure.message, "run failed");
        // Marked first: workers holding its tasks drop them rather than go on.
        if let Err(error) = self.staging.mark_stopped(run_id, Stopped::Failed).await {
            warn!(run_id, %error, "could not mark the failed run stopped in staging");
        }
        let Some(run) = self.store.get_run(run_id).await? else {
            return Ok(());
        };
        let keep = self.keeps_staging(&run);
        let cleanup = Cleanup::Failed {
            delete_staging: !keep,
        };
        match self.clean_up(&run, cleanup).await {
            Ok(true) => {}
            Ok(false) if keep => {}
            Ok(false) => self.delete_staging(run_id).await,
            Err(error) => {
                // The sweep asks again.
                warn!(run_id, %error, "could not ask for the failed run's uploads to be taken back");
            }
        }
        Ok(())
    }

    /// Whether the run is over (or unknown): its late events change nothing.
    pub(super) async fn run_has_ended(&self, run_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get_run(run_id)
            .await?
            .is_none_or(|run| is_final(run.state)))
    }

    /// Whether a failed run's staging is kept for a retry: its whole stream was received.
    pub(super) fn keeps_staging(&self, run: &RunRecord) -> bool {
        !self.keep_failed.is_zero() && run.segment_count.is_some()
    }

    /// Cancels a run that has not succeeded: marks it stopped in staging, so that workers drop
    /// its tasks (and an uploader that finishes a file meanwhile deletes it), then has a worker
    /// abort its open uploads, delete the files it delivered and delete its staging. Says
    /// whether it was cancelled now (not when it had succeeded or was cancelled already).
    pub async fn cancel(&self, run: &RunRecord) -> Result<bool, PlanError> {
        let run_id = run.run_id.as_str();
        // Not while a planning step of the run is publishing its tasks.
        let one_at_a_time = self.lock.lock().await;
        if !self.store.cancel(run_id).await? {
            return Ok(false);
        }
        drop(one_at_a_time);
        info!(run_id, "run cancelled");
        if let Err(error) = self.staging.mark_stopped(run_id, Stopped::Cancelled).await {
            warn!(run_id, %error, "could not mark the cancelled run stopped in staging");
        }
        match self.clean_up(run, Cleanup::Cancelled).await {
            Ok(true) => {}
            Ok(false) => self.delete_staging(run_id).await,
            Err(error) => {
                // The sweep deletes its staging; uploads left open wait for the bucket's
                // lifecycle rules.
                warn!(run_id, %error, "could not ask for the cancelled run to be cleaned up");
                self.delete_staging(run_id).await;
            }
        }
        Ok(true)
    }

    /// Resumes a failed run from its staged data: segments not encoded are encoded again, and
    /// every file is planned and uploaded again (the failure took back what was uploaded).
    pub async fn retry(&self, run: &RunRecord) -> Result<Result<(), NotRetryable>, PlanError> {
        let run_id = run.run_id.as_str();
        if run.state != RunState::Failed {
            return Ok(Err(NotRetryable::NotFailed(run.state)));
        }
        if run.segment_count.is_none() {
            return Ok(Err(NotRetryable::FailedReceiving));
        }
        if !self.staging.has_run(run_id).await {
            return Ok(Err(NotRetryable::StagingGone));
        }
        let AcceptedExport {
            spec,
            max_block_bytes,
        } = match self.accepted_of(run) {
            Ok(accepted) => accepted,
            Err(failure) => {
                warn!(run_id, message = %failure.message, "a failed run's request cannot be read");
                return Ok(Err(NotRetryable::StagingGone));
            }
        };
        if let Err(error) = self.staging.clear_stopped(run_id).await {
            return Err(PlanError::Staging(error));
        }
        if !self.store.retry(run_id).await? {
            let state = self.store.get_run(run_id).await?.map(|run| run.state);
            return Ok(Err(NotRetryable::NotFailed(
                state.unwrap_or(RunState::Unspecified),
            )));
        }
        info!(run_id, "run retried");
        for segment in self.store.segments(run_id).await? {
            if segment.encoded() {
                continue;
            }
            let segment = NewSegment {
                segment_index: segment.segment_index,
                partition_index: segment.partition_index,
                row_offset: segment.row_offset,
                row_count: segment.row_count,
            };
            let task = messages::encode(run_id, &spec, &segment, max_block_bytes);
            self.broker.publish(Queue::Encode, &task).await?;
        }
        self.plan(run_id).await?;
        Ok(Ok(()))
    }

    /// Asks a worker to clean up a run at its destination (`FinalizeTask.run_failed`,
    /// `run_cancelled` or `pending_only`); says whether it asked. Nothing is asked of a run
    /// with no planned file, or whose destination cannot be reached any more (its credential
    /// deleted).
    pub(super) async fn clean_up(
        &self,
        run: &RunRecord,
        cleanup: Cleanup,
    ) -> Result<bool, PlanError> {
        let files = self.store.files(&run.run_id).await?;
        let Ok(spec) = self.spec_of(run) else {
            return Ok(false);
        };
        if files.is_empty() {
            return Ok(false);
        }
        let Ok(sealed) = self.sealed_access(&run.tenant_id, &spec, &mut None).await? else {
            return Ok(false);
        };
        let task = messages::cleanup(run, &spec, &files, cleanup, sealed);
        self.broker.publish(Queue::Finalize, &task).await?;
        Ok(true)
    }
}
