//! The planner: turns worker events into the next tasks, and ends runs.
//!
//! # Layout
//! - [`decide`]: what a run is ready for (files to upload, its commit), decided from its
//!   records alone: pure, and where the rules of planning are tested.
//! - this module: [`Planner`] and its planning step, which loads a run's records, asks
//!   [`decide`], and publishes and records what it decided.
//! - [`events`]: worker events and dead letters into the store and the next planning step.
//! - [`lifecycle`]: failing, cancelling and retrying runs, and their cleanup tasks.
//! - [`sweep`]: the staging sweep.
//! - [`access`]: a run's destination resolved (stored credentials) and sealed for workers.
//!
//! The task messages themselves are built in `crate::messages`.
//!
//! # Events
//! - `SegmentEncoded` → when every segment of a file is encoded and the file can grow no more
//!   (a later file has begun, or the stream has ended), publish its upload task.
//! - `FileUploaded` → when every file is uploaded, publish the finalize task (committing).
//! - `RunFinalized` → succeeded; what it wrote is recorded (for later runs that replace it),
//!   the earlier runs it replaced are marked, and staging is deleted.
//! - `TaskFailed` → failed with the worker's error; staging is kept for a retry when the
//!   stream was received (`staging.keep_failed_hours`), deleted otherwise.
//!
//! Planning runs under one lock per process, reads the run's state from the store each time,
//! and publishes before recording, so a crash between the two republishes (harmless: tasks
//! are idempotent) rather than losing a task. Control-plane replicas on one store may plan a
//! run at once: a task published twice is harmless, state moves are conditional, and an
//! upload reported before another replica recorded its file is tried again.

mod access;
pub mod decide;
mod events;
mod lifecycle;
mod sweep;

pub use access::resolve_access;
pub use lifecycle::NotRetryable;

use decide::{NewFile, Recorded, decide};
use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_proto::v1::{ExportRequest, RunState, S3Destination};
use filedrop_runtime::broker::{Broker, BrokerError, Queue};
use filedrop_runtime::faults::Faults;
use filedrop_runtime::secrets::SecretBox;
use filedrop_runtime::staging::{Staging, StagingError};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::acceptance::{self, AcceptedExport};
use crate::manifest;
use crate::messages;
use crate::store::states::Transition;
use crate::store::{RunRecord, RunStore, StoreError, is_final};

/// Where a destination's objects are, for telling runs that write the same keys at the same
/// place: its endpoint (empty for Amazon S3) and bucket.
fn location_of(destination: &S3Destination) -> String {
    format!(
        "{}|{}",
        destination.endpoint_url.trim_end_matches('/'),
        destination.bucket
    )
}

/// Errors of planning.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The staging store failed.
    #[error("staging: {0}")]
    Staging(StagingError),
    /// A file's upload was reported before its planning step recorded it (the step ran on
    /// another control plane and has not finished).
    #[error("file {0} is not recorded yet")]
    FileNotPlannedYet(u64),
}

/// The planner.
#[derive(Debug)]
pub struct Planner {
    store: RunStore,
    broker: Arc<Broker>,
    staging: Staging,
    secrets: SecretBox,
    /// How long a failed run's staging is kept for a retry; zero: not kept.
    keep_failed: Duration,
    lock: Mutex<()>,
    /// Faults injected for tests; none in production.
    faults: Arc<Faults>,
}

impl Planner {
    /// A planner over the given parts; a failed run's staging is kept for `keep_failed`.
    pub fn new(
        store: RunStore,
        broker: Arc<Broker>,
        staging: Staging,
        secrets: SecretBox,
        keep_failed: Duration,
        faults: Arc<Faults>,
    ) -> Self {
        Self {
            store,
            broker,
            staging,
            secrets,
            keep_failed,
            lock: Mutex::new(()),
            faults,
        }
    }

    /// Deletes the run's staging; a failure is only logged (the sweep tries again).
    async fn delete_staging(&self, run_id: &str) {
        if let Err(error) = self.staging.delete_run(run_id).await {
            warn!(run_id, %error, "could not delete the run's staging");
        }
    }

    /// The run's request as accepted: opened and decoded.
    fn request_of(&self, run: &RunRecord) -> Result<ExportRequest, RunFailure> {
        acceptance::request_of(&self.secrets, run)
    }

    /// The run's export as it was accepted.
    fn accepted_of(&self, run: &RunRecord) -> Result<AcceptedExport, RunFailure> {
        AcceptedExport::of_run(&self.secrets, run)
    }

    /// The run's settings as they were accepted.
    fn spec_of(&self, run: &RunRecord) -> Result<ExportSpec, RunFailure> {
        self.accepted_of(run).map(|accepted| accepted.spec)
    }

    /// Publishes whatever tasks the run is ready for: loads what is recorded about it, asks
    /// [`decide`] and carries out the decision. Files are published before they are
    /// recorded, so a crash between the two republishes a task rather than losing one.
    pub async fn plan(&self, run_id: &str) -> Result<(), PlanError> {
        let _one_at_a_time = self.lock.lock().await;
        let Some(run) = self.store.get_run(run_id).await? else {
            return Ok(());
        };
        if is_final(run.state) {
            return Ok(());
        }
        let spec = match self.spec_of(&run) {
            Ok(spec) => spec,
            Err(failure) => return self.fail_run(run_id, &failure).await,
        };
        let segments = self.store.segments(run_id).await?;
        let mut files = self.store.files(run_id).await?;
        let partitions = if spec.partition_by.is_empty() {
            BTreeMap::from([(0, Vec::new())])
        } else {
            self.store.partitions(run_id).await?
        };
        let bound = match spec.bytes_per_file {
            None => None,
            Some(limit) => match messages::size_bound(&spec, &run.arrow_schema) {
                Ok(bound) => Some((bound, limit)),
                Err(failure) => return self.fail_run(run_id, &failure).await,
            },
        };
        let decision = decide(&Recorded {
            run: &run,
            spec: &spec,
            segments: &segments,
            files: &files,
            partitions: &partitions,
            size_limit: bound.as_ref().map(|(bound, limit)| (bound, *limit)),
        });
        let decision = match decision {
            Ok(decision) => decision,
            Err(failure) => return self.fail_run(run_id, &failure).await,
        };

        // Sealed only when a task is published: most events publish nothing.
        let mut sealed_destination: Option<Vec<u8>> = None;
        for NewFile { record, blocks } in decision.new_files {
            let sealed = match self
                .sealed_access(&run.tenant_id, &spec, &mut sealed_destination)
                .await?
            {
                Ok(sealed) => sealed,
                Err(failure) => return self.fail_run(run_id, &failure).await,
            };
            let task = messages::upload(&run, &spec, &record, &blocks, sealed);
            self.broker.publish(Queue::Upload, &task).await?;
            self.store.add_file(run_id, &record).await?;
            info!(
                run_id,
                partition = record.partition_index,
                file = record.number_in_partition,
                key = %record.object_key,
                "file planned"
            );
            files.push(record);
        }
        if decision.encoded {
            self.store.advance(run_id, Transition::Encoded).await?;
        }
        let Some(commit) = decision.commit else {
            return Ok(());
        };
        // Another replica may have begun the commit meanwhile.
        let state = self.store.get_run(run_id).await?.map(|run| run.state);
        if state != Some(RunState::Uploading) {
            return Ok(());
        }
        let sealed = match self
            .sealed_access(&run.tenant_id, &spec, &mut sealed_destination)
            .await?
        {
            Ok(sealed) => sealed,
            Err(failure) => return self.fail_run(run_id, &failure).await,
        };
        let manifest = match commit.manifest_key {
            None => None,
            Some(key) => match self.request_of(&run).and_then(|request| {
                manifest::manifest_json(&request, &spec, &run, &files).map(|json| (key, json))
            }) {
                Ok(manifest) => Some(manifest),
                Err(failure) => return self.fail_run(run_id, &failure).await,
            },
        };
        let (manifest_key, manifest) = manifest.unwrap_or_default();
        // Earlier runs' objects at the same place that this run replaces: those it does not
        // rewrite go after its marker.
        let mut keys: BTreeSet<String> = files.iter().map(|file| file.object_key.clone()).collect();
        keys.extend(
            [&manifest_key, &commit.marker_key]
                .into_iter()
                .filter(|key| !key.is_empty())
                .cloned(),
        );
        let earlier = self
            .store
            .earlier_deliveries(
                &run.tenant_id,
                run_id,
                &location_of(&spec.destination),
                &keys.iter().cloned().collect::<Vec<_>>(),
            )
            .await?;
        let task = messages::commit(
            &run,
            &spec,
            &files,
            messages::CommitObjects {
                marker_key: commit.marker_key,
                manifest_key,
                manifest,
                earlier: &earlier,
                rewritten: &keys,
            },
            sealed,
        );
        self.broker.publish(Queue::Finalize, &task).await?;
        self.store.advance(run_id, Transition::Uploaded).await?;
        info!(
            run_id,
            files = files.len(),
            "every file delivered, committing"
        );
        Ok(())
    }
}
