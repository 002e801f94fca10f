//! The encode role: one staged segment into one block (several, when a split by size needs
//! smaller blocks than the segment makes).

use crate::{Context, report};
use bytes::Bytes;
use filedrop_core::failure::RunFailure;
use filedrop_formats::FormatError;
use filedrop_formats::encode::EncodedBlock;
use filedrop_formats::format::Output;
use filedrop_proto::jobs::v1::{EncodeTask, Encoding, SegmentEncoded, worker_event};
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::staging::{StagingError, Stopped, block_part_key};
use tracing::{debug, info, warn};

/// Consumes encode tasks until shutdown.
pub async fn run(context: Context) -> Result<(), BrokerError> {
    let prefetch = context.config.encode.concurrency;
    crate::boundary::consume(
        context,
        Queue::Encode,
        prefetch,
        |context, task: EncodeTask| async move { handle(&context, task).await },
    )
    .await
}

/// The output of a task's `Encoding`.
pub fn task_output(encoding: Option<&Encoding>) -> Result<Output, RunFailure> {
    let encoding = encoding.ok_or_else(|| RunFailure::internal("task without an encoding"))?;
    Output::from_encoding(encoding)
        .map_err(|problem| RunFailure::internal(format!("task with {problem}")))
}

async fn handle(context: &Context, task: EncodeTask) -> Outcome {
    let run_id = task.run_id.clone();
    let output = match task_output(task.encoding.as_ref()) {
        Ok(output) => output,
        Err(failure) => return report::fail(context, &run_id, failure).await,
    };
    // A failed run's segments are still encoded: a retry of the run uses the blocks.
    if context.staging.stopped(&run_id).await.ok().flatten() == Some(Stopped::Cancelled) {
        info!(
            run_id,
            segment = task.segment_index,
            "run cancelled; dropping task"
        );
        return Outcome::Ack;
    }
    let segment = match context.staging.get(&task.segment_key).await {
        Ok(segment) => segment,
        Err(StagingError::NotFound { .. }) => {
            // The run's staging is gone: it ended (failed or cancelled) while this waited.
            info!(
                run_id,
                segment = task.segment_index,
                "segment gone, run ended; dropping task"
            );
            return Outcome::Ack;
        }
        Err(error) => {
            warn!(run_id, %error, "staging read failed, will retry");
            return Outcome::Retry;
        }
    };
    let first_row_number = task.row_offset + 1;
    let max_block_bytes = (task.max_block_bytes > 0).then_some(task.max_block_bytes);
    let encoded = tokio::task::spawn_blocking(move || {
        filedrop_runtime::panic::catch_blocking(|| {
            encode(&output, segment, first_row_number, max_block_bytes)
        })
    })
    .await
    .unwrap_or_else(|join| {
        Err(filedrop_runtime::panic::Panic {
            location: format!("a blocking thread ({join:?})"),
        })
    });
    let blocks = match encoded {
        Ok(Ok(blocks)) => blocks,
        Ok(Err(FormatError::FileTooLarge(message))) => {
            return report::fail(
                context,
                &run_id,
                RunFailure::new(ErrorCode::FileTooLarge, message),
            )
            .await;
        }
        Ok(Err(error)) => {
            return report::fail(
                context,
                &run_id,
                RunFailure::internal(format!(
                    "segment {} could not be encoded: {error}",
                    task.segment_index
                )),
            )
            .await;
        }
        Err(panic) => {
            return report::fail(
                context,
                &run_id,
                RunFailure::panicked(
                    &format!("encoding of segment {}", task.segment_index),
                    panic,
                ),
            )
            .await;
        }
    };
    let block_sizes: Vec<u64> = blocks
        .iter()
        .map(|block| block.bytes.len() as u64)
        .collect();
    let block_rows: Vec<u64> = blocks.iter().map(|block| block.rows).collect();
    for (part, block) in blocks.into_iter().enumerate() {
        let key = block_part_key(&task.block_key, part);
        if let Err(error) = context.staging.put(&key, block.bytes).await {
            warn!(run_id, %error, "staging write failed, will retry");
            return Outcome::Retry;
        }
    }
    let block_size = block_sizes.iter().sum();
    let several = block_sizes.len() > 1;
    debug!(
        run_id,
        segment = task.segment_index,
        rows = task.row_count,
        block_size,
        blocks = block_sizes.len(),
        "segment encoded"
    );
    report::publish(
        context,
        &run_id,
        worker_event::Event::SegmentEncoded(SegmentEncoded {
            segment_index: task.segment_index,
            block_size,
            block_sizes: if several { block_sizes } else { Vec::new() },
            block_rows: if several { block_rows } else { Vec::new() },
        }),
    )
    .await
}

fn encode(
    output: &Output,
    segment: Bytes,
    first_row_number: u64,
    max_block_bytes: Option<u64>,
) -> Result<Vec<EncodedBlock>, FormatError> {
    let (schema, batches) = filedrop_formats::segment::read_segment(segment)?;
    filedrop_formats::encode::encode_bounded(
        output,
        &schema,
        &batches,
        first_row_number,
        max_block_bytes,
    )
}
