//! The commit of a run: every file's pending upload completed (the files become visible only
//! now), the uploads no longer needed aborted, then the manifest, then the success marker, and
//! only then the objects of earlier runs it replaces without rewriting them deleted. The same queue carries the cleanup of a run that failed or was cancelled (its pending
//! uploads aborted, what its commit completed deleted, nothing written) and of what a late
//! task left behind a run that ended.

use crate::pending::{self, Undone, staging_failure};
use crate::uploader::connect;
use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{DeliveredObject, FinalizeTask, RunFinalized, worker_event};
use filedrop_proto::v1::{ErrorCode, WriteMode};
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::faults::Place;
use filedrop_runtime::staging::Stopped;
use filedrop_s3::S3Failure;
use filedrop_s3::objects::{
    Expect, ObjectOptions, abort_open_uploads, delete_if_unchanged, put_small_object, stored_object,
};
use std::collections::HashSet;
use tracing::{info, warn};

/// Consumes finalize tasks until shutdown.
pub async fn run(context: Context) -> Result<(), BrokerError> {
    let prefetch = 1;
    crate::boundary::consume(
        context,
        Queue::Finalize,
        prefetch,
        |context, task: FinalizeTask| async move { handle(&context, task).await },
    )
    .await
}

async fn handle(context: &Context, task: FinalizeTask) -> Outcome {
    let run_id = task.run_id.clone();
    if task.run_failed || task.run_cancelled || task.pending_only {
        return clean_up(context, &task).await;
    }
    if stopped(context, &run_id).await {
        info!(
            run_id,
            "run stopped before its commit; its cleanup takes it back"
        );
        return Outcome::Ack;
    }
    let connected = match connect(context, &task.sealed_destination, &run_id).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let result = connected
        .with_attempts(
            context.config.upload.attempts,
            |failure: &S3Failure| Some(failure),
            || commit(context, &connected, &task),
        )
        .await;
    // The run's last task: its client is not needed any more.
    context.destinations.forget(&run_id);
    match result {
        Ok(Committed::Delivered(objects)) => {
            info!(run_id, marker = %task.marker_key, files = task.files.len(), "run committed");
            report::publish(
                context,
                &run_id,
                worker_event::Event::RunFinalized(RunFinalized {
                    objects,
                    superseded_runs: task.superseded_runs.clone(),
                }),
            )
            .await
        }
        Ok(Committed::Stopped) => {
            info!(
                run_id,
                "run stopped during its commit; what it completed was taken back"
            );
            Outcome::Ack
        }
        Err(failure) => report::fail(context, &run_id, failure.failure).await,
    }
}

/// Whether the run is marked stopped (failed or cancelled). A mark that cannot be read counts
/// as none here; the commit looks again before its marker.
async fn stopped(context: &Context, run_id: &str) -> bool {
    matches!(context.staging.stopped(run_id).await, Ok(Some(_)))
}

/// How a commit ended.
enum Committed {
    /// Every file visible, then the manifest and the marker: every object written.
    Delivered(Vec<DeliveredObject>),
    /// The run was stopped meanwhile: the files this commit completed were taken back, and
    /// no marker was written.
    Stopped,
}

/// One attempt at committing the run; an attempt after a failed one picks up from the
/// records.
async fn commit(
    context: &Context,
    connected: &crate::destination_clients::Connected,
    task: &FinalizeTask,
) -> Result<Committed, S3Failure> {
    let run_id = task.run_id.as_str();
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let mode = connected.destination.write_mode();
    if matches!(mode, WriteMode::FailIfExists | WriteMode::KeepExisting) {
        refuse_existing(context, connected, task, mode).await?;
    }
    // Keeping existing objects, each completion also carries `If-None-Match`: a writer
    // racing the commit fails the run rather than being overwritten.
    let expect = if mode == WriteMode::KeepExisting {
        Expect::Nothing
    } else {
        Expect::Anything
    };
    let mut others = Vec::new();
    let mut written = Vec::with_capacity(task.files.len() + 2);
    for file in &task.files {
        let records = pending::of_file(&context.staging, run_id, file.file_number).await?;
        let Some(chosen) = pending::chosen(&records, &file.object_key).cloned() else {
            return Err(S3Failure::permanent(RunFailure::internal(format!(
                "file {} ({}) has no finished upload in staging; retry the run",
                file.file_number, file.object_key
            ))));
        };
        others.extend(
            records
                .into_iter()
                .filter(|record| record.key != chosen.key),
        );
        let e_tag = pending::commit_file(&context.staging, connected, &chosen, &expect).await?;
        written.push(DeliveredObject {
            object_key: file.object_key.clone(),
            e_tag,
        });
        if written.len() == 1 {
            context
                .faults
                .inject(Place::Commit, file.object_key.as_bytes());
        }
    }
    // Copies of upload tasks that raced the chosen ones.
    for other in &others {
        pending::undo(&context.staging, connected, other, true).await?;
    }
    // Uploads a worker created and died before recording (stores without
    // ListMultipartUploads leave these to the bucket's lifecycle rules).
    let keys: HashSet<String> = task.files.iter().map(|f| f.object_key.clone()).collect();
    let aborted = abort_open_uploads(client, bucket, &task.destination_prefix, &keys).await?;
    if aborted > 0 {
        info!(run_id, aborted, "aborted abandoned multipart uploads");
    }
    // The last look before the marker: a run cancelled (or failed) meanwhile delivers
    // nothing, so what this commit completed is taken back.
    let mark = context
        .staging
        .stopped(run_id)
        .await
        .map_err(|error| staging_failure("reading the stop mark", &error))?;
    if mark.is_some() {
        for file in &task.files {
            // As the commit recorded them, entity tags included.
            for recorded in pending::of_file(&context.staging, run_id, file.file_number).await? {
                pending::undo(&context.staging, connected, &recorded, false).await?;
            }
        }
        return Ok(Committed::Stopped);
    }
    if !task.manifest_key.is_empty() {
        let e_tag = put_small_object(
            client,
            bucket,
            &task.manifest_key,
            &ObjectOptions::new(&connected.destination, "application/json"),
            task.manifest.clone(),
            &Expect::Anything,
        )
        .await?;
        written.push(DeliveredObject {
            object_key: task.manifest_key.clone(),
            e_tag,
        });
    }
    if !task.marker_key.is_empty() {
        let e_tag = put_small_object(
            client,
            bucket,
            &task.marker_key,
            &ObjectOptions::new(&connected.destination, "text/plain"),
            Vec::new(),
            &Expect::Anything,
        )
        .await?;
        written.push(DeliveredObject {
            object_key: task.marker_key.clone(),
            e_tag,
        });
    }
    remove_superseded(connected, task).await?;
    Ok(Committed::Delivered(written))
}

/// Deletes the objects of earlier runs this run replaces without rewriting them, after its
/// marker: each only if it is still the object that run wrote. The run is delivered whatever
/// happens here: an object that cannot be deleted (no `s3:DeleteObject`) stays, with a
/// warning; only a failure that may pass is tried again.
async fn remove_superseded(
    connected: &crate::destination_clients::Connected,
    task: &FinalizeTask,
) -> Result<(), S3Failure> {
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let mut deleted = 0;
    for object in &task.superseded {
        match delete_if_unchanged(client, bucket, &object.object_key, &object.e_tag).await {
            Ok(true) => deleted += 1,
            Ok(false) => {}
            Err(failure) if failure.retryable => return Err(failure),
            Err(failure) => {
                warn!(run_id = %task.run_id, key = %object.object_key, error = %failure,
                    "an earlier run's object this run replaces could not be deleted; it stays");
            }
        }
    }
    if !task.superseded.is_empty() {
        info!(run_id = %task.run_id, deleted, runs = task.superseded_runs.len(),
            "objects of the earlier runs this run replaces deleted");
    }
    Ok(())
}

/// Under a write mode that keeps existing objects: fails the commit (`OBJECT_EXISTS`, for
/// good) if a key the run would write holds an object — except the files an earlier attempt of
/// this commit completed, and, once one has, the manifest and marker it may have written.
async fn refuse_existing(
    context: &Context,
    connected: &crate::destination_clients::Connected,
    task: &FinalizeTask,
    mode: WriteMode,
) -> Result<(), S3Failure> {
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let mut keys = Vec::new();
    let mut begun = false;
    for file in &task.files {
        let records = pending::of_file(&context.staging, &task.run_id, file.file_number).await?;
        let completed = records
            .iter()
            .any(|r| r.upload.object_key == file.object_key && !r.upload.e_tag.is_empty());
        begun |= completed;
        if !completed {
            keys.push(file.object_key.as_str());
        }
    }
    if !begun {
        keys.extend(
            [task.manifest_key.as_str(), task.marker_key.as_str()]
                .into_iter()
                .filter(|key| !key.is_empty()),
        );
    }
    for key in keys {
        if stored_object(client, bucket, key).await?.is_some() {
            return Err(S3Failure::permanent(RunFailure::new(
                ErrorCode::ObjectExists,
                format!(
                    "s3://{bucket}/{key} already holds an object, and the destination's write \
                     mode ({}) keeps existing objects; nothing was written. Delete the object, \
                     name the files differently, or use WRITE_MODE_REPLACE",
                    mode.as_str_name()
                ),
            )));
        }
    }
    Ok(())
}

/// A run that failed or was cancelled: its pending uploads aborted and what its commit
/// completed deleted (only objects still as it wrote them), then, when asked, its staging
/// deleted. With `pending_only` (a run that ended, and a late task's upload recorded since),
/// only pending uploads are aborted. Best effort: the run has ended already, so a failure here
/// is logged, and retried only when it may pass.
async fn clean_up(context: &Context, task: &FinalizeTask) -> Outcome {
    let run_id = task.run_id.as_str();
    if task.run_failed {
        // A failed run retried since (its mark cleared) has uploads of its own now.
        match context.staging.stopped(run_id).await {
            Ok(Some(Stopped::Failed | Stopped::Cancelled)) => {}
            Ok(None) => {
                info!(run_id, "failed run retried since; nothing to clean up");
                return Outcome::Ack;
            }
            Err(error) => {
                warn!(run_id, %error, "could not read the stop mark; will retry");
                return Outcome::Retry;
            }
        }
    }
    let cleaned = match context
        .destinations
        .connect(&task.sealed_destination, run_id)
        .await
    {
        Ok(connected) => {
            context.destinations.forget(run_id);
            connected
                .with_attempts(
                    context.config.upload.attempts,
                    |failure: &S3Failure| Some(failure),
                    || clean_up_destination(context, &connected, task),
                )
                .await
        }
        Err(failure) => Err(failure),
    };
    match cleaned {
        Ok(()) => {}
        Err(failure) if failure.retryable => return Outcome::Retry,
        Err(failure) => {
            warn!(run_id, error = %failure, "could not clean up the stopped run at its destination");
        }
    }
    if (task.run_cancelled || task.delete_staging)
        && let Err(error) = context.staging.delete_run(run_id).await
    {
        warn!(run_id, %error, "could not delete the stopped run's staging; the sweep will");
    }
    Outcome::Ack
}

async fn clean_up_destination(
    context: &Context,
    connected: &crate::destination_clients::Connected,
    task: &FinalizeTask,
) -> Result<(), S3Failure> {
    let run_id = task.run_id.as_str();
    let (mut aborted, mut deleted, mut kept) = (0, 0, 0);
    for recorded in pending::of_run(&context.staging, run_id).await? {
        match pending::undo(&context.staging, connected, &recorded, task.pending_only).await? {
            Undone::Aborted => aborted += 1,
            Undone::Deleted => deleted += 1,
            Undone::Kept => kept += 1,
        }
    }
    if !task.pending_only {
        let keys: HashSet<String> = task.files.iter().map(|f| f.object_key.clone()).collect();
        aborted += abort_open_uploads(
            &connected.client,
            &connected.destination.bucket,
            &task.destination_prefix,
            &keys,
        )
        .await?;
    }
    info!(
        run_id,
        aborted, deleted, kept, "ended run cleaned up at its destination"
    );
    Ok(())
}
