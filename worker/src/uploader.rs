//! The upload role: a file's blocks, assembled in order, uploaded to the destination — but
//! not made visible. A file of several parts goes up as a multipart upload left open; a file
//! of one part is staged whole. Either is recorded in staging as a `PendingUpload` (the
//! multipart upload from the moment it exists), and the run's commit (`finalizer`) makes it
//! visible. A task delivered again finds the record of a finished upload and reports it
//! without uploading twice.

use crate::encoder::task_output;
use crate::pending::{self, Recorded, keep, recorded_parts, staging_failure};
use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_formats::FormatError;
use filedrop_formats::format::Output;
use filedrop_proto::jobs::v1::{FileUploaded, PendingUpload, UploadTask, worker_event};
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::staging::{
    STAGED_FILE_TAG, StagingError, staged_file_key, upload_key, upload_tag,
};
use filedrop_s3::S3Failure;
use filedrop_s3::objects::ObjectOptions;
use filedrop_s3::upload::{PartWriter, Pending, UploadError, part_size_for, upload_pending};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Consumes upload tasks until shutdown.
pub async fn run(context: Context) -> Result<(), BrokerError> {
    let prefetch = context.config.upload.concurrency;
    crate::boundary::consume(
        context,
        Queue::Upload,
        prefetch,
        |context, task: UploadTask| async move { handle(&context, task).await },
    )
    .await
}

/// What an upload attempt ended with, beyond success.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Destination(S3Failure),
    #[error("the run's staging is gone")]
    RunGone,
    /// The file cannot be delivered: the run fails with this.
    #[error(transparent)]
    Run(RunFailure),
}

async fn handle(context: &Context, task: UploadTask) -> Outcome {
    let run_id = task.run_id.clone();
    match context.staging.stopped(&run_id).await {
        Ok(None) => {}
        Ok(Some(why)) => {
            // A failed run's retry publishes the task again.
            info!(
                run_id,
                file = task.file_number,
                ?why,
                "run stopped; dropping task"
            );
            return Outcome::Ack;
        }
        Err(error) => {
            warn!(run_id, %error, "staging read failed, will retry");
            return Outcome::Retry;
        }
    }
    let prepared = task_output(task.encoding.as_ref()).and_then(|output| {
        let schema = filedrop_formats::segment::schema_from_bytes(&task.arrow_schema)
            .map_err(|error| RunFailure::internal(format!("task schema is corrupt: {error}")))?;
        Ok((output, schema))
    });
    let (output, schema) = match prepared {
        Ok(prepared) => prepared,
        Err(failure) => return report::fail(context, &run_id, failure).await,
    };
    let connected = match connect(context, &task.sealed_destination, &run_id).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let mut block_sizes = Vec::with_capacity(task.block_keys.len());
    for key in &task.block_keys {
        match context.staging.size(key).await {
            Ok(size) => block_sizes.push(size),
            Err(StagingError::NotFound { .. }) => return run_gone(&task),
            Err(error) => {
                warn!(run_id, %error, "staging read failed, will retry");
                return Outcome::Retry;
            }
        }
    }
    let config = &context.config.upload;
    let estimated_size = block_sizes.iter().sum();
    let parts = FileParts {
        output,
        schema,
        block_sizes,
    };
    let part_size = part_size_for(config.part_size_mib * 1024 * 1024, estimated_size);
    let result = connected
        .with_attempts(
            config.attempts,
            |failed| match failed {
                Failed::Destination(failure) => Some(failure),
                _ => None,
            },
            || deliver_once(context, &task, &connected, &parts, part_size),
        )
        .await;
    match result {
        Ok(Delivery { recorded, .. }) if stopped_meanwhile(context, &run_id).await => {
            // The run's cleanup may have listed the records before this one was kept: the
            // upload is taken back here too (undoing twice is harmless).
            if let Err(failure) =
                pending::undo(&context.staging, &connected, &recorded, false).await
            {
                warn!(run_id, file = task.file_number, error = %failure,
                    "run stopped during the upload; the upload could not be aborted");
            }
            info!(
                run_id,
                file = task.file_number,
                "run stopped during the upload; upload aborted"
            );
            Outcome::Ack
        }
        Ok(Delivery { recorded, earlier }) => {
            let size = recorded.upload.size;
            if earlier {
                info!(run_id, file = task.file_number, key = %task.object_key, size,
                    "file was uploaded before; counted done, not uploaded again");
            } else {
                info!(run_id, file = task.file_number, key = %task.object_key, size,
                    "file uploaded, pending its commit");
            }
            report::publish(
                context,
                &run_id,
                worker_event::Event::FileUploaded(FileUploaded {
                    file_number: task.file_number,
                    size,
                    sha256: recorded.upload.sha256,
                }),
            )
            .await
        }
        Err(Failed::Destination(failure)) => report::fail(context, &run_id, failure.failure).await,
        Err(Failed::Run(failure)) => report::fail(context, &run_id, failure).await,
        Err(Failed::RunGone) => run_gone(&task),
    }
}

/// Whether the run stopped (failed or was cancelled) while its file was being uploaded.
/// Looked at after the upload is recorded: either this sees the stop, or the run's cleanup,
/// which begins after the stop is marked, sees the record and aborts the upload. A mark that
/// cannot be read counts as none: the file is reported, and a cleanup still finds its record.
async fn stopped_meanwhile(context: &Context, run_id: &str) -> bool {
    matches!(context.staging.stopped(run_id).await, Ok(Some(_)))
}

/// The destination of a task, with a client for it. A failure to reach it that may pass
/// (STS unreachable, throttled) retries the task later; any other fails the run.
pub async fn connect(
    context: &Context,
    sealed: &[u8],
    run_id: &str,
) -> Result<crate::destination_clients::Connected, Outcome> {
    match context.destinations.connect(sealed, run_id).await {
        Ok(connected) => Ok(connected),
        Err(failure) if failure.retryable => {
            warn!(run_id, error = %failure, "destination not reachable yet, will retry");
            Err(Outcome::Retry)
        }
        Err(failure) => Err(report::fail(context, run_id, failure.failure).await),
    }
}

fn run_gone(task: &UploadTask) -> Outcome {
    info!(run_id = %task.run_id, file = task.file_number, "blocks gone, run ended; dropping task");
    Outcome::Ack
}

/// What a file is made of.
#[derive(Clone)]
struct FileParts {
    /// The run's output.
    output: Output,
    /// The run's schema.
    schema: arrow_schema::SchemaRef,
    /// The staged sizes of the file's blocks, in order.
    block_sizes: Vec<u64>,
}

/// A file uploaded, pending its commit.
struct Delivery {
    recorded: Recorded,
    /// Uploaded by an earlier copy of the task, not by this one.
    earlier: bool,
}

/// Uploads the file unless a finished upload of it is recorded already; records it.
async fn deliver_once(
    context: &Context,
    task: &UploadTask,
    connected: &crate::destination_clients::Connected,
    parts: &FileParts,
    part_size: usize,
) -> Result<Delivery, Failed> {
    let records = pending::of_file(&context.staging, &task.run_id, task.file_number)
        .await
        .map_err(Failed::Destination)?;
    if let Some(recorded) = pending::chosen(&records, &task.object_key) {
        return Ok(Delivery {
            recorded: recorded.clone(),
            earlier: true,
        });
    }
    let recorded = upload_once(context, task, connected, parts, part_size).await?;
    Ok(Delivery {
        recorded,
        earlier: false,
    })
}

/// The record of an upload's first moment: the multipart upload exists, nothing is up yet.
fn opened(task: &UploadTask, upload_id: &str, content_type: &str) -> Recorded {
    Recorded {
        key: upload_key(&task.run_id, task.file_number, &upload_tag(upload_id)),
        upload: PendingUpload {
            object_key: task.object_key.clone(),
            upload_id: upload_id.to_owned(),
            content_type: content_type.to_owned(),
            ..PendingUpload::default()
        },
    }
}

/// Records a pending file once all of it is up (or, when small, staged).
async fn record_pending(
    context: &Context,
    task: &UploadTask,
    pending: Pending,
    content_type: &str,
) -> Result<Recorded, S3Failure> {
    let recorded = match pending {
        Pending::Small { bytes, sha256 } => {
            let staged_key = staged_file_key(&task.run_id, task.file_number);
            let size = bytes.len() as u64;
            context
                .staging
                .put(&staged_key, bytes)
                .await
                .map_err(|error| staging_failure("staging a small file", &error))?;
            Recorded {
                key: upload_key(&task.run_id, task.file_number, STAGED_FILE_TAG),
                upload: PendingUpload {
                    object_key: task.object_key.clone(),
                    size,
                    sha256,
                    staged_key,
                    content_type: content_type.to_owned(),
                    uploaded: true,
                    ..PendingUpload::default()
                },
            }
        }
        Pending::Multipart {
            upload_id,
            parts,
            size,
            sha256,
        } => {
            let mut recorded = opened(task, &upload_id, content_type);
            recorded.upload.size = size;
            recorded.upload.sha256 = sha256;
            recorded.upload.parts = recorded_parts(&parts);
            recorded.upload.uploaded = true;
            recorded
        }
    };
    keep(&context.staging, &recorded.key, &recorded.upload).await?;
    Ok(recorded)
}

/// Assembles the file on a blocking thread while its parts are uploaded.
async fn upload_once(
    context: &Context,
    task: &UploadTask,
    connected: &crate::destination_clients::Connected,
    parts: &FileParts,
    part_size: usize,
) -> Result<Recorded, Failed> {
    let destination = &connected.destination;
    let (sender, receiver) = mpsc::channel(1);
    let staging = context.staging.clone();
    let block_keys = task.block_keys.clone();
    let object_key = task.object_key.clone();
    let content_type = parts.output.content_type();
    let FileParts {
        output,
        schema,
        block_sizes,
    } = parts.clone();
    let runtime = tokio::runtime::Handle::current();
    let assembler = tokio::task::spawn_blocking(move || {
        filedrop_runtime::panic::catch_blocking(move || {
            let writer = PartWriter::new(part_size, sender);
            let fetch = |index: usize| {
                runtime
                    .block_on(staging.get(&block_keys[index]))
                    .map_err(|error| match error {
                        StagingError::NotFound { .. } => FormatError::Io(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "block gone",
                        )),
                        other => FormatError::Io(std::io::Error::other(other)),
                    })
            };
            let writer = filedrop_formats::assemble::assemble(
                &output,
                &schema,
                &object_key,
                &block_sizes,
                fetch,
                writer,
            )?;
            writer.finish()?;
            Ok::<(), FormatError>(())
        })
    });
    let uploaded = upload_pending(
        &connected.client,
        &destination.bucket,
        &task.object_key,
        &ObjectOptions::new(destination, content_type),
        receiver,
        context.config.upload.parts_in_flight,
        // Recorded before any part goes up, so that no upload exists unrecorded for longer
        // than a call.
        |upload_id| async move {
            let recorded = opened(task, &upload_id, content_type);
            keep(&context.staging, &recorded.key, &recorded.upload)
                .await
                .map_err(|failure| failure.to_string())
        },
    )
    .await;
    let assembled = assembler.await.unwrap_or_else(|join| {
        Err(filedrop_runtime::panic::Panic {
            location: format!("a blocking thread ({join:?})"),
        })
    });
    match (uploaded, assembled) {
        (Ok(pending), Ok(Ok(()))) => record_pending(context, task, pending, content_type)
            .await
            .map_err(Failed::Destination),
        (Err(UploadError::Destination(failure)), _) => Err(Failed::Destination(failure)),
        (Err(UploadError::NotRecorded(why)), _) => Err(Failed::Destination(S3Failure::transient(
            RunFailure::internal(format!("staging: {why}")),
        ))),
        (_, Ok(Err(FormatError::Io(error)))) if error.kind() == std::io::ErrorKind::NotFound => {
            Err(Failed::RunGone)
        }
        (_, Ok(Err(FormatError::FileTooLarge(message)))) => Err(Failed::Run(RunFailure::new(
            ErrorCode::FileTooLarge,
            format!("{}: {message}", task.object_key),
        ))),
        (_, Ok(Err(error))) => Err(Failed::Run(RunFailure::internal(format!(
            "file {} could not be assembled: {error}",
            task.file_number
        )))),
        (_, Err(panic)) => Err(Failed::Run(RunFailure::panicked(
            &format!("assembly of file {}", task.file_number),
            panic,
        ))),
        (Err(UploadError::Incomplete), Ok(Ok(()))) => Err(Failed::Run(RunFailure::internal(
            "the assembler ended without finishing the file",
        ))),
    }
}
