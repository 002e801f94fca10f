//! The upload role: a file's blocks, assembled in order, streamed to the destination.
//!
//! A delivered file leaves a receipt in staging (`DeliveryReceipt`: key, size, SHA-256, entity
//! tag). A task delivered again finds it, checks that the same object is still at the key,
//! and counts the file delivered without uploading it twice. Every write carries what the key
//! held when it was looked at as a precondition, so two copies of a task never both replace
//! the object: the later one is refused, looks again, and finds the receipt.

use crate::encoder::task_output;
use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_formats::FormatError;
use filedrop_formats::format::Output;
use filedrop_proto::jobs::v1::{DeliveryReceipt, FileUploaded, UploadTask, worker_event};
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::staging::{StagingError, Stopped, receipt_key};
use filedrop_s3::S3Failure;
use filedrop_s3::objects::{
    Expect, ObjectOptions, StoredObject, delete_if_unchanged, stored_object,
};
use filedrop_s3::upload::{PartWriter, UploadError, UploadedObject, part_size_for, upload_stream};
use prost::Message;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Consumes upload tasks until shutdown.
pub async fn run(context: Context) -> Result<(), BrokerError> {
    let prefetch = context.config.upload.concurrency;
    let broker = context.broker.clone();
    broker
        .consume(Queue::Upload, prefetch, move |payload| {
            let context = context.clone();
            async move {
                let handled = handle(&context, &payload);
                crate::boundary::guarded(&context, Queue::Upload, &payload, handled).await
            }
        })
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

async fn handle(context: &Context, payload: &[u8]) -> Outcome {
    let task = match UploadTask::decode(payload) {
        Ok(task) => task,
        Err(error) => {
            warn!(%error, "undecodable upload task, dead-lettering it");
            return Outcome::Reject;
        }
    };
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
        Ok(Delivery { receipt, .. }) if cancelled_meanwhile(context, &run_id).await => {
            take_back(context, &connected, &task, &receipt).await
        }
        Ok(Delivery { receipt, earlier }) => {
            let size = receipt.size;
            if earlier {
                info!(run_id, file = task.file_number, key = %task.object_key, size,
                    "file was delivered before; counted done, not uploaded again");
            } else {
                info!(run_id, file = task.file_number, key = %task.object_key, size, "file delivered");
            }
            report::publish(
                context,
                &run_id,
                worker_event::Event::FileUploaded(FileUploaded {
                    file_number: task.file_number,
                    size,
                    sha256: receipt.sha256,
                }),
            )
            .await
        }
        Err(Failed::Destination(failure)) => report::fail(context, &run_id, failure.failure).await,
        Err(Failed::Run(failure)) => report::fail(context, &run_id, failure).await,
        Err(Failed::RunGone) => run_gone(&task),
    }
}

/// Whether the run was cancelled while its file was being delivered. Looked at after the
/// receipt is kept: either this sees the cancellation, or the cancellation's cleanup, which
/// begins after it is marked, sees the receipt and deletes the file. A mark that cannot be
/// read counts as none: the file is reported, and a cancellation's cleanup still finds its
/// receipt.
async fn cancelled_meanwhile(context: &Context, run_id: &str) -> bool {
    matches!(
        context.staging.stopped(run_id).await,
        Ok(Some(Stopped::Cancelled))
    )
}

/// Deletes the file just delivered for a run cancelled meanwhile.
async fn take_back(
    context: &Context,
    connected: &crate::destinations::Connected,
    task: &UploadTask,
    receipt: &DeliveryReceipt,
) -> Outcome {
    let bucket = &connected.destination.bucket;
    let deleted = connected
        .with_attempts(
            context.config.upload.attempts,
            |failure: &S3Failure| Some(failure),
            || delete_if_unchanged(&connected.client, bucket, &task.object_key, &receipt.e_tag),
        )
        .await;
    // Acknowledged either way: a redelivered task would find the run stopped and drop it.
    match deleted {
        Ok(_) => {
            info!(run_id = %task.run_id, key = %task.object_key, "run cancelled during the upload; file deleted");
            Outcome::Ack
        }
        Err(failure) => {
            warn!(run_id = %task.run_id, key = %task.object_key, error = %failure,
                "run cancelled during the upload; the file could not be deleted");
            Outcome::Ack
        }
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

/// A delivered file.
struct Delivery {
    receipt: DeliveryReceipt,
    /// Delivered by an earlier copy of the task, not by this one.
    earlier: bool,
}

/// Delivers the file unless its receipt shows it delivered and the object it names is still
/// at the key; then leaves the receipt.
async fn deliver_once(
    context: &Context,
    task: &UploadTask,
    connected: &crate::destinations::Connected,
    parts: &FileParts,
    part_size: usize,
) -> Result<Delivery, Failed> {
    let receipt_key = receipt_key(&task.run_id, task.file_number);
    let receipt = read_receipt(context, &receipt_key).await;
    let looked = stored_object(
        &connected.client,
        &connected.destination.bucket,
        &task.object_key,
    )
    .await;
    let expect = match looked {
        Ok(stored) => {
            if let (Some(receipt), Some(stored)) = (&receipt, &stored)
                && receipt_matches(receipt, &task.object_key, stored)
            {
                return Ok(Delivery {
                    receipt: receipt.clone(),
                    earlier: true,
                });
            }
            Expect::found(stored.as_ref())
        }
        // A refused HEAD cannot say why (a wrong key and a missing s3:GetObject both answer a
        // bare 403): the write is tried without a precondition, and its answer names the cause.
        Err(failure) if !failure.retryable && !failure.credentials_expired => Expect::Anything,
        Err(failure) => return Err(Failed::Destination(failure)),
    };
    let uploaded = upload_once(context, task, connected, &expect, parts, part_size).await?;
    let receipt = DeliveryReceipt {
        object_key: task.object_key.clone(),
        size: uploaded.size,
        sha256: uploaded.sha256,
        e_tag: uploaded.e_tag,
    };
    if let Err(error) = context
        .staging
        .put(&receipt_key, receipt.encode_to_vec().into())
        .await
    {
        // Without it a redelivered task uploads the file again, to the same key.
        warn!(run_id = %task.run_id, file = task.file_number, %error, "could not keep the delivery receipt");
    }
    Ok(Delivery {
        receipt,
        earlier: false,
    })
}

/// Whether `receipt` describes the object `stored` at `object_key`.
fn receipt_matches(receipt: &DeliveryReceipt, object_key: &str, stored: &StoredObject) -> bool {
    receipt.object_key == object_key
        && receipt.size == stored.size
        && !receipt.e_tag.is_empty()
        && receipt.e_tag == stored.e_tag
}

/// The receipt at `key`, if there is a readable one (any doubt means uploading again).
async fn read_receipt(context: &Context, key: &str) -> Option<DeliveryReceipt> {
    match context.staging.get(key).await {
        Ok(bytes) => DeliveryReceipt::decode(bytes).ok(),
        Err(StagingError::NotFound { .. }) => None,
        Err(error) => {
            warn!(key, %error, "could not read a delivery receipt; the file is uploaded again");
            None
        }
    }
}

/// Assembles the file on a blocking thread while its parts are uploaded.
async fn upload_once(
    context: &Context,
    task: &UploadTask,
    connected: &crate::destinations::Connected,
    expect: &Expect,
    parts: &FileParts,
    part_size: usize,
) -> Result<UploadedObject, Failed> {
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
    let uploaded = upload_stream(
        &connected.client,
        &destination.bucket,
        &task.object_key,
        &ObjectOptions::new(destination, content_type),
        expect,
        receiver,
        context.config.upload.parts_in_flight,
    )
    .await;
    let assembled = assembler.await.unwrap_or_else(|join| {
        Err(filedrop_runtime::panic::Panic {
            location: format!("a blocking thread ({join:?})"),
        })
    });
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
        (_, Err(panic)) => Err(Failed::Run(RunFailure::panicked(
            &format!("assembly of file {}", task.file_number),
            panic,
        ))),
        (Err(UploadError::Incomplete), Ok(Ok(()))) => Err(Failed::Run(RunFailure::internal(
            "the assembler ended without finishing the file",
        ))),
    }
}
