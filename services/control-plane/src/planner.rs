//! The planner: turns worker events into the next tasks.
//!
//! - `SegmentEncoded` → when every segment of a file is encoded and the file can grow no more
//!   (a later file has begun, or the stream has ended), publish its upload task. Files are
//!   numbered densely from 1 in stream order, within each partition of a partitioned export
//!   (see `filedrop_core::plan::file_id` for their ids in the run).
//! - `FileUploaded` → when every file is uploaded, publish the finalize task (committing).
//! - `RunFinalized` → succeeded; what it wrote is recorded (for later runs that replace it),
//!   the earlier runs it replaced are marked, and staging is deleted.
//! - `TaskFailed` → failed with the worker's error; staging is kept for a retry when the
//!   stream was received (`staging.keep_failed_hours`), deleted otherwise.
//! - An event whose handling panics fails its run with `INTERNAL`; so does a task that died in
//!   the dead-letter queue of the delivery limit (a poison message that crashed every process
//!   that took it).
//!
//! It also cancels runs and retries failed ones (`RunService`), and sweeps staging for what
//! ended runs left behind.
//!
//! Planning runs under one lock per process, reads the run's state from the store each time,
//! and publishes before recording, so a crash between the two republishes (harmless: tasks
//! are idempotent) rather than losing a task. Control-plane replicas on one store may plan a
//! run at once: a task published twice is harmless, state moves are conditional, and an
//! upload reported before another replica recorded its file is tried again.

use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_core::plan::{
    BlockRef, EncodedSegment, file_count, file_id, file_number_for, pack_by_size,
};
use filedrop_formats::format::Output;
use filedrop_formats::segment::schema_from_bytes;
use filedrop_formats::size::SizeBound;
use filedrop_proto::jobs::v1::{
    DeliveredFile, DeliveredObject, DestinationAccess, EncodeTask, FinalizeTask, RoleGrant,
    UploadTask, WorkerEvent, worker_event,
};
use filedrop_proto::v1::{ErrorCode, ExportRequest, RunState, S3Destination};
use filedrop_runtime::broker::{
    Broker, BrokerError, DELIVERY_LIMIT, DeadLetter, DeathReason, Outcome, Queue,
};
use filedrop_runtime::faults::{Faults, Place};
use filedrop_runtime::secrets::SecretBox;
use filedrop_runtime::shutdown::Shutdown;
use filedrop_runtime::staging::{
    Staging, StagingError, Stopped, block_key, block_part_key, segment_key, uploads_of_run,
};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::manifest;
use crate::store::states::Transition;
use crate::store::{
    FileRecord, RunRecord, RunStore, SegmentRecord, StoreError, StoredCredential, is_final,
};

/// Where a destination's objects are, for telling runs that write the same keys at the same
/// place: its endpoint (empty for Amazon S3) and bucket.
fn location_of(destination: &S3Destination) -> String {
    format!(
        "{}|{}",
        destination.endpoint_url.trim_end_matches('/'),
        destination.bucket
    )
}

/// Files of a partition ready to upload (number and blocks, in order), and the partition's
/// file count once known.
type ReadyFiles = (Vec<(u64, Vec<BlockRef>)>, Option<u64>);

/// Row splits: a file is ready when a later file has begun (or the stream ended) and every
/// one of its segments is encoded.
fn files_by_rows(
    spec: &ExportSpec,
    rows: u64,
    segments: &[&SegmentRecord],
    stream_ended: bool,
) -> ReadyFiles {
    let mut by_file: BTreeMap<u64, Vec<BlockRef>> = BTreeMap::new();
    let mut encoded: BTreeMap<u64, bool> = BTreeMap::new();
    for segment in segments {
        let number = file_number_for(segment.row_offset, spec.rows_per_file);
        let blocks = segment.block_sizes.len().max(1);
        by_file
            .entry(number)
            .or_default()
            .extend((0..blocks).map(|part| (segment.segment_index, part)));
        *encoded.entry(number).or_insert(true) &= segment.encoded;
    }
    let last_started = by_file.keys().next_back().copied().unwrap_or(0);
    let total_files = stream_ended.then(|| file_count(rows, spec.rows_per_file, spec.skip_empty));
    let ready = (1..=total_files.unwrap_or(last_started))
        .filter(|number| {
            let closed = stream_ended || *number < last_started;
            closed && encoded.get(number).copied().unwrap_or(true)
        })
        .map(|number| (number, by_file.remove(&number).unwrap_or_default()))
        .collect();
    (ready, total_files)
}

/// `destination` with its stored credential (one of `tenant_id`'s), if it names one, resolved
/// for the workers: a role grant, or the stored access key opened with `secrets` (the result
/// is sealed again before it leaves the control plane).
pub async fn resolve_access(
    store: &RunStore,
    secrets: &SecretBox,
    tenant_id: &str,
    destination: &S3Destination,
) -> Result<Result<DestinationAccess, RunFailure>, StoreError> {
    let mut destination = destination.clone();
    let role_to_role = if destination.credential_id.is_empty() {
        None
    } else {
        match store
            .credential_of(tenant_id, &destination.credential_id)
            .await?
            .map(|credential| credential.kind)
        {
            Some(StoredCredential::RoleToRole {
                role_arn,
                external_id,
            }) => Some(RoleGrant {
                role_arn,
                external_id,
            }),
            Some(StoredCredential::AccessKey { sealed_key, .. }) => {
                match crate::credentials::open_key(secrets, &sealed_key) {
                    Ok(key) => destination.access_key = Some(key),
                    Err(failure) => return Ok(Err(failure)),
                }
                None
            }
            None => {
                return Ok(Err(RunFailure::new(
                    ErrorCode::InvalidCredentials,
                    format!(
                        "destination.credential_id: there is no credential {:?}; create one \
                         with CredentialService.CreateCredential",
                        destination.credential_id
                    ),
                )));
            }
        }
    };
    Ok(Ok(DestinationAccess {
        destination: Some(destination),
        role_to_role,
    }))
}

/// The size bound of a run's files.
fn size_bound(spec: &ExportSpec, run: &RunRecord) -> Result<SizeBound, RunFailure> {
    let output = Output::from_encoding(&spec.encoding)
        .map_err(|problem| RunFailure::internal(format!("reading the format: {problem}")))?;
    let schema = schema_from_bytes(&run.arrow_schema)
        .map_err(|error| RunFailure::internal(format!("the stored schema: {error}")))?;
    SizeBound::new(&output, &schema)
        .map_err(|error| RunFailure::internal(format!("bounding file sizes: {error}")))
}

/// Size splits: files packed from the encoded blocks' sizes (see `pack_by_size`).
fn files_by_size(
    spec: &ExportSpec,
    rows: u64,
    segments: &[&SegmentRecord],
    stream_ended: bool,
    (bound, limit): (&SizeBound, u64),
) -> ReadyFiles {
    let encoded: Vec<EncodedSegment> = segments
        .iter()
        .map(|segment| EncodedSegment {
            index: segment.segment_index,
            block_sizes: segment.encoded.then(|| segment.block_sizes.clone()),
        })
        .collect();
    let plan = pack_by_size(
        &encoded,
        stream_ended,
        spec.skip_empty,
        rows,
        |bytes, blocks| bound.file(bytes, blocks) <= limit,
    );
    let ready = plan
        .files
        .into_iter()
        .enumerate()
        .map(|(index, blocks)| (index as u64 + 1, blocks))
        .collect();
    (ready, plan.total)
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

/// What a cleanup task asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleanup {
    /// The run failed: take back what it uploaded; its staging goes too unless it is kept
    /// for a retry.
    Failed {
        /// Whether its staging goes too.
        delete_staging: bool,
    },
    /// The run was cancelled: take back what it uploaded, delete its staging.
    Cancelled,
    /// The run ended; abort the uploads recorded since that were never completed.
    PendingOnly,
}

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

    /// Consumes worker events until shutdown.
    pub async fn consume_events(self: Arc<Self>) -> Result<(), BrokerError> {
        let broker = self.broker.clone();
        broker
            .consume(Queue::Events, 16, move |payload| {
                let planner = self.clone();
                async move { planner.on_event(&payload).await }
            })
            .await
    }

    async fn on_event(&self, payload: &[u8]) -> Outcome {
        let event = match WorkerEvent::decode(payload) {
            Ok(event) => event,
            Err(error) => {
                warn!(%error, "undecodable worker event, dead-lettering it");
                return Outcome::Reject;
            }
        };
        let handled = filedrop_runtime::panic::catch(async {
            self.inject_fault(&event).await;
            self.apply(&event).await
        })
        .await;
        match handled {
            Ok(Ok(())) => Outcome::Ack,
            Ok(Err(error)) => {
                warn!(run_id = %event.run_id, %error, "event handling failed, will retry");
                Outcome::Retry
            }
            Err(panic) => {
                // The event cannot be handled: the run cannot go on. Tried again only if the
                // failure cannot be recorded now; after the delivery limit the dead-letter
                // consumer fails the run.
                let what = filedrop_runtime::tasks::describe(Queue::Events, payload)
                    .map_or_else(|| "handling of a worker's report".to_owned(), |t| t.what);
                let failure = RunFailure::panicked(&what, panic);
                match self.fail_run(&event.run_id, &failure).await {
                    Ok(()) => Outcome::Reject,
                    Err(error) => {
                        warn!(run_id = %event.run_id, %error, "could not fail the run of a panicked event, will retry");
                        Outcome::Retry
                    }
                }
            }
        }
    }

    /// Injects the fault configured for events (tests only), matched against the request of
    /// the event's run.
    async fn inject_fault(&self, event: &WorkerEvent) {
        if !self.faults.any_at(Place::Events) {
            return;
        }
        if let Ok(Some(run)) = self.store.get_run(&event.run_id).await
            && let Ok(request) = self.request_of(&run)
        {
            self.faults.inject(Place::Events, &request.encode_to_vec());
        }
    }

    /// Consumes the dead-letter queue until shutdown: a task that died of the delivery limit
    /// (each process that took it stopped before finishing it) fails its run, so that no run
    /// waits for it forever. A rejected task needs nothing: whoever rejected it reported why.
    pub async fn consume_dead_letters(self: Arc<Self>) -> Result<(), BrokerError> {
        let broker = self.broker.clone();
        broker
            .consume_dead_letters(4, move |letter| {
                let planner = self.clone();
                async move { planner.on_dead_letter(letter).await }
            })
            .await
    }

    async fn on_dead_letter(&self, letter: DeadLetter) -> Outcome {
        let task = letter
            .queue
            .and_then(|queue| filedrop_runtime::tasks::describe(queue, &letter.payload));
        let Some(task) = task else {
            warn!(queue = ?letter.queue, reason = ?letter.reason, "an undecodable message was dead-lettered; dropping it");
            return Outcome::Ack;
        };
        let why = match &letter.reason {
            DeathReason::Rejected => {
                info!(run_id = %task.run_id, task = %task.what, "a rejected task was dead-lettered; its failure was reported");
                return Outcome::Ack;
            }
            DeathReason::DeliveryLimit => format!(
                "was given to a process {} times and each stopped before finishing it (a crash, \
                 or a kill for lack of memory)",
                DELIVERY_LIMIT + 1
            ),
            DeathReason::Other(reason) => format!("was dropped by the queue ({reason})"),
        };
        let failure = RunFailure::fault(&task.what, why);
        match self.fail_run(&task.run_id, &failure).await {
            Ok(()) => Outcome::Ack,
            Err(error) => {
                warn!(run_id = %task.run_id, %error, "could not fail the run of a dead-lettered task, will retry");
                Outcome::Retry
            }
        }
    }

    async fn apply(&self, event: &WorkerEvent) -> Result<(), PlanError> {
        let run_id = event.run_id.as_str();
        match &event.event {
            Some(worker_event::Event::SegmentEncoded(encoded)) => {
                self.store
                    .segment_encoded(
                        run_id,
                        encoded.segment_index,
                        encoded.block_size,
                        &encoded.block_sizes,
                        &encoded.block_rows,
                    )
                    .await?;
                self.plan(run_id).await
            }
            Some(worker_event::Event::FileUploaded(uploaded)) => {
                // Under the planning lock: a file's task is published before its row is
                // recorded, so a fast upload's event must wait for the planning step that
                // published it, or its update would find no row and be lost.
                // Another replica's planning step may still be between the two: the event is
                // tried again until the row is there.
                let one_at_a_time = self.lock.lock().await;
                let known = self
                    .store
                    .file_uploaded(
                        run_id,
                        uploaded.file_number,
                        uploaded.size,
                        &uploaded.sha256,
                    )
                    .await?;
                drop(one_at_a_time);
                if !known && !self.run_has_ended(run_id).await? {
                    return Err(PlanError::FileNotPlannedYet(uploaded.file_number));
                }
                self.plan(run_id).await
            }
            Some(worker_event::Event::RunFinalized(finalized)) => {
                // What it wrote, for the runs that will replace it; and the runs it replaced.
                if let Some(run) = self.store.get_run(run_id).await?
                    && let Ok(spec) = self.spec_of(&run)
                {
                    let objects: Vec<(String, String)> = finalized
                        .objects
                        .iter()
                        .map(|object| (object.object_key.clone(), object.e_tag.clone()))
                        .collect();
                    self.store
                        .record_delivered(run_id, &location_of(&spec.destination), &objects)
                        .await?;
                    self.store
                        .supersede(&finalized.superseded_runs, run_id)
                        .await?;
                }
                if self.store.advance(run_id, Transition::Committed).await? {
                    info!(run_id, "run succeeded");
                    self.delete_staging(run_id).await;
                }
                Ok(())
            }
            Some(worker_event::Event::TaskFailed(failed)) => {
                let failure = RunFailure {
                    code: failed.code(),
                    message: failed.message.clone(),
                    resolutions: failed.resolutions().collect(),
                };
                self.fail_run(run_id, &failure).await
            }
            None => Ok(()),
        }
    }

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
    async fn run_has_ended(&self, run_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get_run(run_id)
            .await?
            .is_none_or(|run| is_final(run.state)))
    }

    /// Whether a failed run's staging is kept for a retry: its whole stream was received.
    fn keeps_staging(&self, run: &RunRecord) -> bool {
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
        let spec = match self.spec_of(run) {
            Ok(spec) => spec,
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
        let max_block_bytes = match spec.bytes_per_file {
            None => 0,
            Some(limit) => match size_bound(&spec, run) {
                Ok(bound) => bound.largest_block(limit).unwrap_or(0),
                Err(failure) => {
                    self.fail_run(run_id, &failure).await?;
                    return Ok(Ok(()));
                }
            },
        };
        for segment in self.store.segments(run_id).await? {
            if segment.encoded {
                continue;
            }
            let task = EncodeTask {
                run_id: run_id.to_owned(),
                segment_index: segment.segment_index,
                segment_key: segment_key(run_id, segment.segment_index),
                block_key: block_key(run_id, segment.segment_index),
                row_offset: segment.row_offset,
                row_count: segment.row_count,
                encoding: Some(spec.encoding.clone()),
                max_block_bytes,
            };
            self.broker.publish(Queue::Encode, &task).await?;
        }
        self.plan(run_id).await?;
        Ok(Ok(()))
    }

    /// Asks a worker to clean up a run at its destination (`FinalizeTask.run_failed`,
    /// `run_cancelled` or `pending_only`); says whether it asked. Nothing is asked of a run
    /// with no planned file, or whose destination cannot be reached any more (its credential
    /// deleted).
    async fn clean_up(&self, run: &RunRecord, cleanup: Cleanup) -> Result<bool, PlanError> {
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
        let task = FinalizeTask {
            run_id: run.run_id.clone(),
            files: files
                .iter()
                .map(|file| DeliveredFile {
                    object_key: file.object_key.clone(),
                    size: 0,
                    file_number: file.file_number,
                })
                .collect(),
            sealed_destination: sealed,
            destination_prefix: spec.destination.prefix.clone(),
            run_failed: matches!(cleanup, Cleanup::Failed { .. }),
            run_cancelled: cleanup == Cleanup::Cancelled,
            pending_only: cleanup == Cleanup::PendingOnly,
            delete_staging: matches!(
                cleanup,
                Cleanup::Failed {
                    delete_staging: true
                }
            ),
            ..FinalizeTask::default()
        };
        self.broker.publish(Queue::Finalize, &task).await?;
        Ok(true)
    }

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

    async fn delete_staging(&self, run_id: &str) {
        if let Err(error) = self.staging.delete_run(run_id).await {
            warn!(run_id, %error, "could not delete the run's staging");
        }
    }

    fn request_of(&self, run: &RunRecord) -> Result<ExportRequest, RunFailure> {
        let plain = self
            .secrets
            .open(&run.sealed_request)
            .map_err(|error| RunFailure::internal(error.to_string()))?;
        ExportRequest::decode(plain.as_slice())
            .map_err(|error| RunFailure::internal(format!("stored request is corrupt: {error}")))
    }

    fn spec_of(&self, run: &RunRecord) -> Result<ExportSpec, RunFailure> {
        ExportSpec::validate(self.request_of(run)?)
            .map_err(|invalid| RunFailure::new(invalid.code, invalid.to_string()))
    }

    /// The run's destination with what workers need to reach it (a stored credential
    /// resolved), sealed; kept in `sealed` for the rest of the planning step. A credential
    /// deleted since the export was accepted fails the run.
    async fn sealed_access(
        &self,
        tenant_id: &str,
        spec: &ExportSpec,
        sealed: &mut Option<Vec<u8>>,
    ) -> Result<Result<Vec<u8>, RunFailure>, StoreError> {
        if let Some(sealed) = sealed {
            return Ok(Ok(sealed.clone()));
        }
        let access =
            match resolve_access(&self.store, &self.secrets, tenant_id, &spec.destination).await? {
                Ok(access) => access,
                Err(failure) => return Ok(Err(failure)),
            };
        let bytes = self.secrets.seal(&access.encode_to_vec());
        *sealed = Some(bytes.clone());
        Ok(Ok(bytes))
    }

    /// Publishes whatever tasks the run is ready for.
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
        let now = chrono::DateTime::from_timestamp_millis(run.created_at).unwrap_or_default();
        let segments = self.store.segments(run_id).await?;
        let mut files = self.store.files(run_id).await?;
        let stream_ended =
            run.segment_count == Some(segments.len() as u64) && run.state != RunState::Receiving;

        // A run that is not partitioned is its one partition, 0, with no values.
        let partitions = if spec.partition_by.is_empty() {
            BTreeMap::from([(0, Vec::new())])
        } else {
            self.store.partitions(run_id).await?
        };
        let bound = match spec.bytes_per_file {
            None => None,
            Some(limit) => match size_bound(&spec, &run) {
                Ok(bound) => Some((bound, limit)),
                Err(failure) => return self.fail_run(run_id, &failure).await,
            },
        };
        let mut ready_files = Vec::new();
        let mut total_files = Some(0);
        for (&partition, values) in &partitions {
            let segments: Vec<&SegmentRecord> = segments
                .iter()
                .filter(|segment| segment.partition_index == partition)
                .collect();
            let rows = segments.iter().map(|segment| segment.row_count).sum();
            let (ready, total) = match &bound {
                None => files_by_rows(&spec, rows, &segments, stream_ended),
                Some((bound, limit)) => {
                    files_by_size(&spec, rows, &segments, stream_ended, (bound, *limit))
                }
            };
            let values: BTreeMap<String, String> = spec
                .partition_by
                .iter()
                .cloned()
                .zip(values.clone())
                .collect();
            ready_files.extend(
                ready
                    .into_iter()
                    .map(|(number, blocks)| (partition, number, blocks, values.clone())),
            );
            total_files = total_files.zip(total).map(|(sum, total)| sum + total);
        }
        // Sealed only when a task is published: most events publish nothing.
        let mut sealed_destination: Option<Vec<u8>> = None;
        let rows_of_block = |(segment, part): &BlockRef| {
            segments
                .iter()
                .find(|record| record.segment_index == *segment)
                .and_then(|record| record.block_rows.get(*part).copied())
                .unwrap_or(0)
        };

        for (partition, number, blocks, values) in ready_files {
            let file_number = file_id(partition, number);
            if files.iter().any(|file| file.file_number == file_number) {
                continue;
            }
            let object_key = match spec.object_key(run_id, now, number, &values) {
                Ok(key) => key,
                Err(failure) => return self.fail_run(run_id, &failure).await,
            };
            let sealed = match self
                .sealed_access(&run.tenant_id, &spec, &mut sealed_destination)
                .await?
            {
                Ok(sealed) => sealed,
                Err(failure) => return self.fail_run(run_id, &failure).await,
            };
            let task = UploadTask {
                run_id: run_id.to_owned(),
                file_number,
                object_key: object_key.clone(),
                block_keys: blocks
                    .iter()
                    .map(|(segment, part)| block_part_key(&block_key(run_id, *segment), *part))
                    .collect(),
                arrow_schema: run.arrow_schema.clone(),
                encoding: Some(spec.encoding.clone()),
                sealed_destination: sealed,
            };
            self.broker.publish(Queue::Upload, &task).await?;
            let file = FileRecord {
                file_number,
                partition_index: partition,
                number_in_partition: number,
                object_key,
                rows: blocks.iter().map(rows_of_block).sum(),
                uploaded_size: None,
                sha256: None,
            };
            self.store.add_file(run_id, &file).await?;
            info!(run_id, partition, file = number, key = %file.object_key, "file planned");
            files.push(file);
        }

        let Some(total_files) = total_files else {
            return Ok(());
        };
        if files.len() as u64 == total_files {
            self.store.advance(run_id, Transition::Encoded).await?;
        }
        let all_uploaded = files.len() as u64 == total_files
            && files.iter().all(|file| file.uploaded_size.is_some());
        let state = self.store.get_run(run_id).await?.map(|run| run.state);
        if all_uploaded && state == Some(RunState::Uploading) {
            let marker_key = match spec.marker_key(run_id, now) {
                Ok(key) => key.unwrap_or_default(),
                Err(failure) => return self.fail_run(run_id, &failure).await,
            };
            let sealed = match self
                .sealed_access(&run.tenant_id, &spec, &mut sealed_destination)
                .await?
            {
                Ok(sealed) => sealed,
                Err(failure) => return self.fail_run(run_id, &failure).await,
            };
            let manifest = match spec.manifest_key(run_id) {
                Ok(None) => None,
                Ok(Some(key)) => match self.request_of(&run).and_then(|request| {
                    manifest::manifest_json(&request, &spec, &run, &files).map(|json| (key, json))
                }) {
                    Ok(manifest) => Some(manifest),
                    Err(failure) => return self.fail_run(run_id, &failure).await,
                },
                Err(failure) => return self.fail_run(run_id, &failure).await,
            };
            let (manifest_key, manifest) = manifest.unwrap_or_default();
            // Earlier runs' objects at the same place that this run replaces: those it does
            // not rewrite go after its marker.
            let mut keys: BTreeSet<String> =
                files.iter().map(|file| file.object_key.clone()).collect();
            keys.extend(
                [&manifest_key, &marker_key]
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
            let superseded = earlier
                .values()
                .flatten()
                .filter(|(key, _)| !keys.contains(key))
                .map(|(object_key, e_tag)| DeliveredObject {
                    object_key: object_key.clone(),
                    e_tag: e_tag.clone(),
                })
                .collect();
            let task = FinalizeTask {
                run_id: run_id.to_owned(),
                files: files
                    .iter()
                    .map(|file| DeliveredFile {
                        object_key: file.object_key.clone(),
                        size: file.uploaded_size.unwrap_or_default(),
                        file_number: file.file_number,
                    })
                    .collect(),
                marker_key,
                sealed_destination: sealed,
                destination_prefix: spec.destination.prefix.clone(),
                manifest_key,
                manifest,
                superseded,
                superseded_runs: earlier.keys().cloned().collect(),
                ..FinalizeTask::default()
            };
            self.broker.publish(Queue::Finalize, &task).await?;
            self.store.advance(run_id, Transition::Uploaded).await?;
            info!(
                run_id,
                files = files.len(),
                "every file delivered, committing"
            );
        }
        Ok(())
    }
}
