//! The upload role: a file's blocks, assembled in order, streamed to the destination.

use crate::encoder::task_output;
use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_formats::FormatError;
use filedrop_formats::format::Output;
use filedrop_proto::jobs::v1::{FileUploaded, UploadTask, worker_event};
use filedrop_proto::v1::{ErrorCode, S3Destination};
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::staging::StagingError;
use filedrop_s3::S3Failure;
use filedrop_s3::objects::ObjectOptions;
use filedrop_s3::upload::{PartWriter, UploadError, UploadedObject, part_size_for, upload_stream};
use prost::Message;
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Consumes upload tasks until shutdown.
pub async fn run(context: Context) -> Result<(), BrokerError> {
    let prefetch = context.config.upload.concurrency;
    let broker = context.broker.clone();
    broker
        .consume(Queue::Upload, prefetch, move |payload| {
            let context = context.clone();
            async move { handle(&context, &payload).await }
        })
        .await
}

/// Runs `attempt` until it succeeds, fails for good, or `attempts` transient failures pass.
pub async fn with_attempts<T, E, F, Fut>(
    attempts: u32,
    is_transient: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pause = Duration::from_millis(500);
    for number in 1..=attempts.max(1) {
        match attempt().await {
            Err(failure) if is_transient(&failure) && number < attempts => {
                warn!(attempt = number, error = %failure, "transient destination failure, retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the last attempt returns")
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

async fn handle(context: &Context, payload: &[u8]) -> Outcome {
    let task = match UploadTask::decode(payload) {
        Ok(task) => task,
        Err(error) => {
            warn!(%error, "undecodable upload task, dead-lettering it");
            return Outcome::Reject;
        }
    };
    let run_id = task.run_id.clone();
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
    let result = with_attempts(
        config.attempts,
        |failed| matches!(failed, Failed::Destination(failure) if failure.retryable),
        || {
            upload_once(
                context,
                &task,
                &connected.client,
                &connected.destination,
                &parts,
                part_size,
            )
        },
    )
    .await;
    match result {
        Ok(uploaded) => {
            let size = uploaded.size;
            info!(run_id, file = task.file_number, key = %task.object_key, size, "file delivered");
            report::publish(
                context,
                &run_id,
                worker_event::Event::FileUploaded(FileUploaded {
                    file_number: task.file_number,
                    size,
                    sha256: uploaded.sha256,
                }),
            )
            .await
        }
        Err(Failed::Destination(failure)) => report::fail(context, &run_id, failure.failure).await,
        Err(Failed::Run(failure)) => report::fail(context, &run_id, failure).await,
        Err(Failed::RunGone) => run_gone(&task),
    }
}

/// The destination of a task, with a client for it. A failure to reach it that may pass
/// (STS unreachable, throttled) retries the task later; any other fails the run.
pub async fn connect(
    context: &Context,
    sealed: &[u8],
    run_id: &str,
) -> Result<crate::destinations::Connected, Outcome> {
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

/// Assembles the file on a blocking thread while its parts are uploaded.
async fn upload_once(
    context: &Context,
    task: &UploadTask,
    client: &aws_sdk_s3::Client,
    destination: &S3Destination,
    parts: &FileParts,
    part_size: usize,
) -> Result<UploadedObject, Failed> {
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
    });
    let uploaded = upload_stream(
        client,
        &destination.bucket,
        &task.object_key,
        &ObjectOptions::new(destination, content_type),
        receiver,
        context.config.upload.parts_in_flight,
    )
    .await;
    let assembled = assembler.await;
    match (uploaded, assembled) {
        (Ok(object), Ok(Ok(()))) => Ok(object),
        (Err(UploadError::Destination(failure)), _) => Err(Failed::Destination(failure)),
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
        (_, Err(join)) => Err(Failed::Run(RunFailure::internal(format!(
            "assembler crashed: {join}"
        )))),
        (Err(UploadError::Incomplete), Ok(Ok(()))) => Err(Failed::Run(RunFailure::internal(
            "the assembler ended without finishing the file",
        ))),
    }
}
