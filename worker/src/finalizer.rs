//! The finalize step: check every file of the run, abort uploads a stopped worker abandoned,
//! write the manifest, then the success marker — last.

use crate::uploader::connect;
use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{FinalizeTask, RunFinalized, worker_event};
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_s3::S3Failure;
use filedrop_s3::objects::{
    Expect, ObjectOptions, abort_open_uploads, put_small_object, stored_object,
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
            async move { handle(&context, &payload).await }
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
    if task.run_failed {
        return abort_uploads_of_failed_run(context, &task).await;
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

/// A failed run: aborts the multipart uploads still open on its files' keys. Best effort: the
/// run has failed already, so a failure here is logged, and retried only when it may pass.
async fn abort_uploads_of_failed_run(context: &Context, task: &FinalizeTask) -> Outcome {
    let run_id = task.run_id.as_str();
    let connected = match context
        .destinations
        .connect(&task.sealed_destination, run_id)
        .await
    {
        Ok(connected) => connected,
        Err(failure) => {
            warn!(run_id, error = %failure, "cannot reach the failed run's destination to abort its uploads");
            return Outcome::Ack;
        }
    };
    context.destinations.forget(run_id);
    let keys: HashSet<String> = task.files.iter().map(|f| f.object_key.clone()).collect();
    let bucket = connected.destination.bucket.as_str();
    match abort_open_uploads(&connected.client, bucket, &task.destination_prefix, &keys).await {
        Ok(aborted) => {
            info!(run_id, aborted, "failed run: open uploads aborted");
            Outcome::Ack
        }
        Err(failure) if failure.retryable => Outcome::Retry,
        Err(failure) => {
            warn!(run_id, error = %failure, "failed run: could not abort its open uploads");
            Outcome::Ack
        }
    }
}
