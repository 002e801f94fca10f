//! The finalize step: check every file of the run, abort uploads a stopped worker abandoned,
//! write the manifest, then the success marker — last. The same queue carries the cleanup of
//! a run that failed (open uploads aborted) or was cancelled (open uploads aborted, the files
//! it delivered deleted, its staging deleted).

use crate::uploader::connect;
use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{DeliveryReceipt, FinalizeTask, RunFinalized, worker_event};
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::staging::{StagingError, receipt_key};
use filedrop_s3::S3Failure;
use filedrop_s3::objects::{
    Expect, ObjectOptions, abort_open_uploads, delete_if_unchanged, put_small_object, stored_object,
};
use prost::Message;
use std::collections::HashSet;
use tracing::{info, warn};

/// Consumes finalize tasks until shutdown.
pub async fn run(context: Context) -> Result<(), BrokerError> {
    let broker = context.broker.clone();
    broker
        .consume(Queue::Finalize, 1, move |payload| {
            let context = context.clone();
            async move {
                let handled = handle(&context, &payload);
                crate::boundary::guarded(&context, Queue::Finalize, &payload, handled).await
            }
        })
        .await
}

async fn handle(context: &Context, payload: &[u8]) -> Outcome {
    let task = match FinalizeTask::decode(payload) {
        Ok(task) => task,
        Err(error) => {
            warn!(%error, "undecodable finalize task, dead-lettering it");
            return Outcome::Reject;
        }
    };
    let run_id = task.run_id.clone();
    if task.run_failed || task.run_cancelled {
        return clean_up_stopped_run(context, &task).await;
    }
    let connected = match connect(context, &task.sealed_destination, &run_id).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let result = connected
        .with_attempts(
            context.config.upload.attempts,
            |failure: &S3Failure| Some(failure),
            || async {
                for file in &task.files {
                    let size = stored_object(client, bucket, &file.object_key)
                        .await?
                        .map(|object| object.size);
                    if size != Some(file.size) {
                        return Err(S3Failure::permanent(RunFailure::new(
                            ErrorCode::Internal,
                            format!(
                                "s3://{bucket}/{} is {} where {} bytes were delivered; something \
                             else writes there — retry the run",
                                file.object_key,
                                size.map_or("missing".to_owned(), |s| format!("{s} bytes")),
                                file.size
                            ),
                        )));
                    }
                }
                let keys: HashSet<String> =
                    task.files.iter().map(|f| f.object_key.clone()).collect();
                let aborted =
                    abort_open_uploads(client, bucket, &task.destination_prefix, &keys).await?;
                if aborted > 0 {
                    info!(run_id, aborted, "aborted abandoned multipart uploads");
                }
                if !task.manifest_key.is_empty() {
                    put_small_object(
                        client,
                        bucket,
                        &task.manifest_key,
                        &ObjectOptions::new(&connected.destination, "application/json"),
                        task.manifest.clone(),
                        &Expect::Anything,
                    )
                    .await?;
                }
                if !task.marker_key.is_empty() {
                    put_small_object(
                        client,
                        bucket,
                        &task.marker_key,
                        &ObjectOptions::new(&connected.destination, "text/plain"),
                        Vec::new(),
                        &Expect::Anything,
                    )
                    .await?;
                }
                Ok(())
            },
        )
        .await;
    // The run's last task: its client is not needed any more.
    context.destinations.forget(&run_id);
    match result {
        Ok(()) => {
            info!(run_id, marker = %task.marker_key, files = task.files.len(), "run finalized");
            report::publish(
                context,
                &run_id,
                worker_event::Event::RunFinalized(RunFinalized {}),
            )
            .await
        }
        Err(failure) => report::fail(context, &run_id, failure.failure).await,
    }
}

/// A failed or cancelled run: aborts the multipart uploads still open on its files' keys;
/// for a cancelled run, also deletes the files it delivered and then its staging. Best effort:
/// the run has ended already, so a failure here is logged, and retried only when it may pass.
async fn clean_up_stopped_run(context: &Context, task: &FinalizeTask) -> Outcome {
    let run_id = task.run_id.as_str();
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
    if task.run_cancelled
        && let Err(error) = context.staging.delete_run(run_id).await
    {
        warn!(run_id, %error, "could not delete the cancelled run's staging; the sweep will");
    }
    Outcome::Ack
}

async fn clean_up_destination(
    context: &Context,
    connected: &crate::destinations::Connected,
    task: &FinalizeTask,
) -> Result<(), S3Failure> {
    let run_id = task.run_id.as_str();
    let client = &connected.client;
    let bucket = connected.destination.bucket.as_str();
    let keys: HashSet<String> = task.files.iter().map(|f| f.object_key.clone()).collect();
    let aborted = abort_open_uploads(client, bucket, &task.destination_prefix, &keys).await?;
    info!(run_id, aborted, "stopped run: open uploads aborted");
    if !task.run_cancelled {
        return Ok(());
    }
    let mut deleted = 0;
    for file in &task.files {
        let receipt = match context
            .staging
            .get(&receipt_key(run_id, file.file_number))
            .await
        {
            Ok(bytes) => DeliveryReceipt::decode(bytes).ok(),
            Err(StagingError::NotFound { .. }) => None,
            Err(error) => {
                return Err(S3Failure::transient(RunFailure::internal(format!(
                    "reading a delivery receipt: {error}"
                ))));
            }
        };
        // Only what this run wrote: without a receipt, the object at the key is not its own.
        if let Some(receipt) = receipt.filter(|r| r.object_key == file.object_key)
            && delete_if_unchanged(client, bucket, &file.object_key, &receipt.e_tag).await?
        {
            deleted += 1;
        }
    }
    info!(run_id, deleted, "cancelled run: delivered files deleted");
    Ok(())
}
