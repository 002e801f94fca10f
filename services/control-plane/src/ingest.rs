//! Export ingest: an Arrow Flight `DoPut` stream into staged segments and encode tasks.
//!
//! 1. The first message's `FlightDescriptor` carries the `ExportRequest`; it is validated
//!    before any record batch is read.
//! 2. The schema is checked against the format when it arrives, before a run exists.
//! 3. In a partitioned export, each batch's rows are grouped by partition, and each partition
//!    fills segments of its own (a new partition is recorded when its first row arrives).
//! 4. Batches are cut into Arrow IPC segments, bounded in rows and bytes and cut at every file
//!    boundary of a row split, so a segment belongs to exactly one file. Each segment is
//!    staged, recorded, then announced with an encode task. Awaiting each step back-pressures
//!    the client: memory stays at about one segment (at most `partition_buffer_bytes` over
//!    the open segments of a partitioned run).

use crate::acceptance::{Acceptance, AcceptedExport, ValidatedExport};
use crate::config::IngestConfig;
use crate::error::{ERROR_CODE_KEY, OrInternal, Refused, internal, invalid_argument};
use crate::messages;
use crate::planner::Planner;
use crate::store::{NewRun, NewSegment, RunRecord, RunStore};
use crate::transactions::HeldRun;
use arrow_array::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_schema::SchemaRef;
use filedrop_core::commit::{CommitProblem, CommitWatch, Received};
use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_core::plan::rows_until_boundary;
use filedrop_formats::format::Output;
use filedrop_formats::partition::Partitioner;
use filedrop_formats::segment::{SegmentWriter, schema_to_bytes};
use filedrop_formats::size::SizeBound;
use filedrop_formats::untrusted::{IpcLimits, check_message, check_values};
use filedrop_proto::jobs::v1::DestinationAccess;
use filedrop_proto::v1::{ErrorCode, ExportAccepted, ExportRequest, WriteMode};
use filedrop_runtime::broker::{Broker, Queue};
use filedrop_runtime::faults::{Faults, Place};
use filedrop_runtime::secrets::SecretBox;
use filedrop_runtime::staging::{Staging, segment_key};
use filedrop_s3::credentials::ServiceIdentity;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tonic::{Status, Streaming};
use tracing::{info, warn};

/// Largest slice of an incoming batch written to a segment at once: keeps the byte limit of a
/// segment accurate when clients send very large batches.
const MAX_SLICE_ROWS: usize = 65_536;

/// The ingest side of the control plane.
#[derive(Debug, Clone)]
pub struct Ingest {
    /// This replica's name: the runs it receives are leased to it (see `leases`).
    pub replica_id: String,
    /// The run store.
    pub store: RunStore,
    /// The broker, for encode tasks.
    pub broker: Arc<Broker>,
    /// Where segments are staged.
    pub staging: Staging,
    /// Seals the stored request.
    pub secrets: SecretBox,
    /// Plans uploads once the stream ends.
    pub planner: Arc<Planner>,
    /// Segment limits, and what one message may declare.
    pub config: IngestConfig,
    /// Faults injected for tests; none in production.
    pub faults: Arc<Faults>,
    /// filedrop's own AWS identity, to look at a destination before data moves
    /// (`WRITE_MODE_FAIL_IF_EXISTS`).
    pub identity: Arc<ServiceIdentity>,
}

/// What the clean end of an export's stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// Commits the run: the export is its own transaction.
    Commits,
    /// Holds the run receiving for the commit of its Flight SQL transaction.
    Holds,
}

/// An accepted export.
#[derive(Debug)]
pub struct Accepted {
    /// The answer to the client.
    pub answer: ExportAccepted,
    /// The run, when the stream's end held it for a transaction (not when it was replayed).
    pub held: Option<HeldRun>,
}

/// A partition being received (the whole run, when it is not partitioned).
#[derive(Default)]
struct ReceivingPartition {
    /// The open segment.
    segment: Option<SegmentWriter>,
    /// The open segment's first row in the partition.
    segment_start: u64,
    /// Rows received.
    rows: u64,
}

/// A run being received.
struct Receiving<'a> {
    run_id: String,
    spec: &'a ExportSpec,
    schema: SchemaRef,
    /// Groups rows by partition, in a partitioned export.
    partitioner: Option<Partitioner>,
    /// Partition indexes by key text.
    partition_indexes: HashMap<Vec<String>, usize>,
    /// By index; one, 0, when the export is not partitioned.
    partitions: Vec<ReceivingPartition>,
    segment_count: u64,
    rows: u64,
    /// A segment is staged when its Arrow IPC reaches this size.
    segment_max_bytes: usize,
    /// See `EncodeTask.max_block_bytes`.
    max_block_bytes: u64,
}

/// In a split by size, segments stay at or under this fraction of the limit (in Arrow bytes),
/// so that files are packed from small blocks and come out nearly full.
const SEGMENTS_PER_SIZE_LIMIT: u64 = 8;

impl Ingest {
    /// Receives one export stream of `tenant` (`first`, the message that carried `request`,
    /// then the rest of `stream`); answers with the run id once every row is staged and the
    /// client has committed the export. A stream that breaks, or ends without its commit,
    /// fails the run (`STREAM_INCOMPLETE`). At its clean end the run is committed, or held
    /// receiving for a Flight SQL transaction (`end`). The run's id goes to `started` as soon
    /// as the run exists, so that the client can be told before its stream ends.
    ///
    /// Not cancel safe: a run it created is left receiving if the future is dropped, so the
    /// Flight endpoint runs it as a task of its own, which a client's reset does not cancel.
    pub async fn export(
        &self,
        tenant: &str,
        request: ExportRequest,
        first: FlightData,
        mut stream: Streaming<FlightData>,
        end: StreamEnd,
        started: tokio::sync::oneshot::Sender<String>,
    ) -> Result<Accepted, Status> {
        let acceptance = Acceptance {
            store: &self.store,
            secrets: &self.secrets,
        };
        let settings = acceptance.export(tenant, request).await?;
        let spec = &settings.spec;
        if let Some(key) = &spec.idempotency_key
            && let Some(run) = self
                .store
                .run_by_idempotency_key(tenant, key)
                .await
                .or_internal("looking up the idempotency key")?
        {
            if run.ended_uncommitted() {
                // Nothing of it was delivered: this export is its next attempt, and takes the
                // key over (a concurrent export that takes it first is replayed below).
                self.store
                    .release_idempotency_key(&run.run_id)
                    .await
                    .or_internal("releasing the idempotency key")?;
                info!(run_id = %run.run_id, "export sent again after its run ended uncommitted; a new attempt");
            } else {
                while stream.message().await?.is_some() {}
                return Ok(replayed(&run, spec));
            }
        }
        let ValidatedExport {
            request,
            spec,
            access,
        } = settings.with_access(&acceptance, tenant).await?;
        let run_id = uuid::Uuid::now_v7().to_string();
        self.refuse_if_exists(&spec, &access, &run_id).await?;
        let output = Output::from_encoding(&spec.encoding).or_internal("reading the format")?;

        // Every message's app_metadata goes to the commit watch, and every message is checked
        // before Arrow's decoder sees it; the decoder runs behind a panic boundary
        // (`next_batch`): malformed IPC gets INVALID_ARGUMENT. Messages with metadata only
        // (an ExportCommit sent alone) have no IPC header and are not decoded.
        let limits = IpcLimits {
            max_columns: self.config.max_columns,
            max_batch_rows: self.config.max_batch_rows,
        };
        let commits = Arc::new(Mutex::new(CommitWatch::new()));
        let watch = commits.clone();
        // A client that hangs without closing its connection is dropped after the idle timeout.
        let idle = Duration::from_secs(self.config.idle_timeout_secs.max(1));
        let messages = tokio_stream::StreamExt::timeout(stream, idle).map(move |message| {
            message.unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "the client sent nothing for {} s",
                    idle.as_secs()
                )))
            })
        });
        let checked = futures::stream::once(async { Ok(first) })
            .chain(messages.map_err(FlightError::from))
            .try_filter_map(move |data| {
                let checked = watch
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .message(&data.app_metadata)
                    .map_err(|problem| FlightError::ExternalError(Box::new(problem)))
                    .and_then(|()| {
                        if data.data_header.is_empty() {
                            return Ok(None);
                        }
                        check_message(&data.data_header, data.data_body.len(), &limits)
                            .map_err(|problem| FlightError::DecodeError(problem.to_string()))?;
                        Ok(Some(data))
                    });
                futures::future::ready(checked)
            });
        let mut batches = FlightRecordBatchStream::new_from_flight_data(checked);
        let max_value_bytes = self.config.max_value_bytes;
        let first_batch = next_batch(&mut batches, max_value_bytes).await?;
        let mut batch_count = u64::from(first_batch.is_some());
        let schema = batches.schema().cloned().ok_or_else(|| {
            invalid_argument(ErrorCode::Unspecified, "the stream carries no Arrow schema")
        })?;
        output.check_schema(&schema).map_err(Refused::refused)?;
        let partitioner = if spec.partition_by.is_empty() {
            None
        } else {
            let partitioner =
                Partitioner::new(&schema, &spec.partition_by).map_err(Refused::refused)?;
            Some(partitioner)
        };

        let (segment_max_bytes, max_block_bytes) = match spec.bytes_per_file {
            None => (self.config.segment_max_bytes, 0),
            Some(limit) => {
                let bound = SizeBound::new(&output, &schema).or_internal("bounding file sizes")?;
                let largest = messages::max_block_bytes(&spec, &bound).map_err(Refused::refused)?;
                let segment_bytes = (limit / SEGMENTS_PER_SIZE_LIMIT).max(64 * 1024);
                (
                    self.config
                        .segment_max_bytes
                        .min(usize::try_from(segment_bytes).unwrap_or(usize::MAX)),
                    largest,
                )
            }
        };

        let schema_bytes = schema_to_bytes(&schema).or_internal("encoding the schema")?;
        let sealed_request = self.secrets.seal(&request.encode_to_vec());
        let sealed_spec = AcceptedExport::seal(&self.secrets, &spec, max_block_bytes)
            .or_internal("keeping the accepted export")?;
        let created = self
            .store
            .create_run(&NewRun {
                tenant_id: tenant,
                run_id: &run_id,
                destination_name: &spec.destination.name,
                idempotency_key: spec.idempotency_key.as_deref(),
                sealed_request: &sealed_request,
                sealed_spec: &sealed_spec,
                arrow_schema: &schema_bytes,
                receiver: &self.replica_id,
            })
            .await
            .or_internal("creating the run")?;
        if !created {
            // The same key was sent at the same time: that export's run is the one.
            while next_batch(&mut batches, max_value_bytes).await?.is_some() {}
            let key = spec.idempotency_key.as_deref().unwrap_or_default();
            let run = self
                .store
                .run_by_idempotency_key(tenant, key)
                .await
                .or_internal("looking up the idempotency key")?
                .ok_or_else(|| internal("looking up the idempotency key", &"no run"))?;
            return Ok(replayed(&run, &spec));
        }
        info!(run_id, bucket = %spec.destination.bucket, prefix = %spec.destination.prefix, "export started");
        // Nobody may be waiting (the call was dropped); the run goes on to fail or commit.
        let _ = started.send(run_id.clone());
        for warning in &spec.warnings {
            warn!(run_id, warning, "export accepted with a warning");
        }

        let mut receiving = Receiving {
            run_id: run_id.clone(),
            spec: &spec,
            schema,
            // A run that is not partitioned is its one partition, 0, from the start (an empty
            // run still delivers its file); partitions of a partitioned run appear with rows.
            partitions: if partitioner.is_some() {
                Vec::new()
            } else {
                vec![ReceivingPartition::default()]
            },
            partitioner,
            partition_indexes: HashMap::new(),
            segment_count: 0,
            rows: 0,
            segment_max_bytes,
            max_block_bytes,
        };
        // Behind a panic boundary: whatever fails while the run is received fails the run.
        let received: Result<(), Status> = filedrop_runtime::panic::catch(async {
            if self.faults.any_at(Place::Ingest) {
                self.faults.inject(Place::Ingest, &request.encode_to_vec());
            }
            let mut next = first_batch;
            while let Some(batch) = next {
                self.receive_batch(&mut receiving, &batch).await?;
                next = next_batch(&mut batches, max_value_bytes).await?;
                batch_count += u64::from(next.is_some());
            }
            let received = Received {
                rows: receiving.rows,
                batches: batch_count,
            };
            commits
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .verdict(received, request.commit_at_stream_end)
                .map_err(not_committed)?;
            for partition in 0..receiving.partitions.len() {
                self.flush(&mut receiving, partition).await?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|panic| {
            Err(Status::internal(format!(
                "receiving the stream failed unexpectedly (filedrop {panic}); this is a fault \
                 in filedrop: send the data again, and tell the operators if it fails the \
                 same way again"
            )))
        });
        if let Err(status) = received {
            warn!(run_id, error = %status.message(), "export stream failed");
            let failure = if status.code() == tonic::Code::Internal {
                RunFailure::new(
                    ErrorCode::Internal,
                    format!(
                        "the export stream could not be received: {}; nothing was delivered",
                        status.message()
                    ),
                )
            } else if status.metadata().get(ERROR_CODE_KEY).is_some_and(|code| {
                code.as_bytes() == ErrorCode::StreamIncomplete.as_str_name().as_bytes()
            }) {
                RunFailure::new(ErrorCode::StreamIncomplete, status.message())
            } else {
                RunFailure::new(
                    ErrorCode::StreamIncomplete,
                    format!("{NOT_COMMITTED}: {}", stream_failure(&status)),
                )
            };
            if let Err(error) = self.planner.fail_run(&run_id, &failure).await {
                warn!(run_id, %error, "could not record the failed run");
            }
            return Err(status);
        }
        let answer = ExportAccepted {
            run_id: run_id.clone(),
            rows: receiving.rows,
            warnings: spec.warnings.clone(),
            replayed: false,
        };
        if end == StreamEnd::Holds {
            info!(
                run_id,
                rows = receiving.rows,
                segments = receiving.segment_count,
                "export stream received; the run waits for its transaction's commit"
            );
            let held = HeldRun {
                run_id,
                rows: receiving.rows,
                segment_count: receiving.segment_count,
            };
            return Ok(Accepted {
                answer,
                held: Some(held),
            });
        }
        self.store
            .end_stream(&run_id, receiving.rows, receiving.segment_count)
            .await
            .or_internal("ending the stream")?;
        info!(
            run_id,
            rows = receiving.rows,
            segments = receiving.segment_count,
            "export stream received"
        );
        self.planner
            .plan(&run_id)
            .await
            .or_internal("planning the run")?;
        Ok(Accepted { answer, held: None })
    }

    /// Under `WRITE_MODE_FAIL_IF_EXISTS`, refuses the export before its data moves when its
    /// first file's key already holds an object. A partitioned export's first key depends on
    /// its data: it is looked at by the commit only (as every key is there).
    async fn refuse_if_exists(
        &self,
        spec: &ExportSpec,
        access: &DestinationAccess,
        run_id: &str,
    ) -> Result<(), Status> {
        if spec.destination.write_mode() != WriteMode::FailIfExists || !spec.partition_by.is_empty()
        {
            return Ok(());
        }
        let key = spec
            .object_key(run_id, chrono::Utc::now(), 1, &BTreeMap::new())
            .map_err(Refused::refused)?;
        match filedrop_s3::probe::object_exists(access, &self.identity, run_id, &key).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(invalid_argument(
                ErrorCode::ObjectExists,
                format!(
                    "destination.write_mode: s3://{}/{key} already holds an object, and \
                     WRITE_MODE_FAIL_IF_EXISTS keeps it; nothing was sent. Delete the object, \
                     name the files differently, or use WRITE_MODE_REPLACE",
                    spec.destination.bucket
                ),
            )),
            Err(failure) => Err(invalid_argument(
                failure.failure.code,
                format!(
                    "destination.write_mode: WRITE_MODE_FAIL_IF_EXISTS could not look at the \
                     first file's key: {}",
                    failure.failure.message
                ),
            )),
        }
    }

    async fn receive_batch(
        &self,
        run: &mut Receiving<'_>,
        batch: &RecordBatch,
    ) -> Result<(), Status> {
        // Cloned (a few column positions) so that `run` can be borrowed mutably below.
        let Some(partitioner) = run.partitioner.clone() else {
            return self.receive_rows(run, 0, batch).await;
        };
        let mut offset = 0;
        while offset < batch.num_rows() {
            // Sliced first, so that grouping copies at most a slice at a time.
            let take = (batch.num_rows() - offset).min(MAX_SLICE_ROWS);
            let parts = partitioner
                .split(&batch.slice(offset, take))
                .or_internal("partitioning a batch")?;
            offset += take;
            for part in parts {
                let partition = self.partition_of(run, part.values).await?;
                self.receive_rows(run, partition, &part.batch).await?;
            }
            self.stage_over_budget(run).await?;
        }
        Ok(())
    }

    /// The index of the partition with these key values, recorded when it is new.
    async fn partition_of(
        &self,
        run: &mut Receiving<'_>,
        values: Vec<String>,
    ) -> Result<usize, Status> {
        if let Some(&index) = run.partition_indexes.get(&values) {
            return Ok(index);
        }
        let index = run.partitions.len();
        if index == self.config.max_partitions {
            return Err(invalid_argument(
                ErrorCode::Unspecified,
                format!(
                    "partition_by: the data has more than {} distinct values of {}; partition \
                     by columns with fewer values (or raise the service's \
                     ingest.max_partitions)",
                    self.config.max_partitions,
                    run.spec.partition_by.join(", ")
                ),
            ));
        }
        self.store
            .add_partition(&run.run_id, index as u64, &values)
            .await
            .or_internal("recording a partition")?;
        run.partition_indexes.insert(values, index);
        run.partitions.push(ReceivingPartition::default());
        Ok(index)
    }

    /// Stages the largest open segments of a partitioned run while together they hold more
    /// than the partition buffer allows.
    async fn stage_over_budget(&self, run: &mut Receiving<'_>) -> Result<(), Status> {
        loop {
            let open = run
                .partitions
                .iter()
                .enumerate()
                .filter_map(|(index, partition)| {
                    partition
                        .segment
                        .as_ref()
                        .map(|segment| (index, segment.size()))
                });
            let (total, largest) = open.fold((0, None), |(total, largest), (index, size)| {
                let largest = match largest {
                    Some((_, most)) if most >= size => largest,
                    _ => Some((index, size)),
                };
                (total + size, largest)
            });
            match largest {
                Some((index, _)) if total > self.config.partition_buffer_bytes => {
                    self.flush(run, index).await?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// Appends rows of one partition to its open segment, staging segments as they fill.
    async fn receive_rows(
        &self,
        run: &mut Receiving<'_>,
        partition: usize,
        batch: &RecordBatch,
    ) -> Result<(), Status> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let state = &mut run.partitions[partition];
            let in_segment = state.rows - state.segment_start;
            let room = (self.config.segment_max_rows - in_segment)
                .min(rows_until_boundary(state.rows, run.spec.rows_per_file).unwrap_or(u64::MAX));
            let take = (batch.num_rows() - offset)
                .min(MAX_SLICE_ROWS)
                .min(room as usize);
            let slice = batch.slice(offset, take);
            let writer = match &mut state.segment {
                Some(writer) => writer,
                None => state
                    .segment
                    .insert(SegmentWriter::new(&run.schema).or_internal("starting a segment")?),
            };
            writer.write(&slice).map_err(|e| {
                invalid_argument(
                    ErrorCode::Unspecified,
                    format!("a record batch could not be staged: {e}"),
                )
            })?;
            offset += take;
            state.rows += take as u64;
            run.rows += take as u64;
            let full = writer.rows() >= self.config.segment_max_rows
                || writer.size() >= run.segment_max_bytes
                || run
                    .spec
                    .rows_per_file
                    .is_some_and(|rows| state.rows.is_multiple_of(rows));
            if full {
                self.flush(run, partition).await?;
            }
        }
        Ok(())
    }

    /// Stages a partition's open segment, records it, and publishes its encode task.
    async fn flush(&self, run: &mut Receiving<'_>, partition: usize) -> Result<(), Status> {
        let state = &mut run.partitions[partition];
        let Some(writer) = state.segment.take() else {
            return Ok(());
        };
        let segment = NewSegment {
            segment_index: run.segment_count,
            partition_index: partition as u64,
            row_offset: state.segment_start,
            row_count: writer.rows(),
        };
        state.segment_start = state.rows;
        let bytes = writer.finish().or_internal("finishing a segment")?;
        self.staging
            .put(&segment_key(&run.run_id, segment.segment_index), bytes)
            .await
            .or_internal("staging a segment")?;
        // Recorded before it is announced, so its `SegmentEncoded` always finds it.
        let receiving = self
            .store
            .add_segment(&run.run_id, &segment, run.rows)
            .await
            .or_internal("recording a segment")?;
        if !receiving {
            // Cancelled (or failed) while it was being received: the rest is not read.
            return Err(Status::aborted(format!(
                "run {} was stopped (cancelled, or failed: see RunService.GetRun) while its \
                 data was being received; nothing is delivered",
                run.run_id
            )));
        }
        let task = messages::encode(&run.run_id, run.spec, &segment, run.max_block_bytes);
        self.broker
            .publish(Queue::Encode, &task)
            .await
            .or_internal("queueing a segment")?;
        run.segment_count += 1;
        Ok(())
    }
}

/// The next batch of a client's stream, decoded behind a panic boundary, its values no larger
/// than `max_value_bytes`: a panic in Arrow's decoder (a malformed message the checks let
/// through) is INVALID_ARGUMENT, like any other message that cannot be decoded. The stream is
/// not read again after an error.
async fn next_batch(
    batches: &mut FlightRecordBatchStream,
    max_value_bytes: usize,
) -> Result<Option<RecordBatch>, Status> {
    let decoded = filedrop_runtime::panic::catch(async {
        let batch = batches.try_next().await.map_err(stream_error)?;
        if let Some(batch) = &batch {
            check_values(batch, max_value_bytes).map_err(|problem| {
                invalid_argument(
                    ErrorCode::Unspecified,
                    format!("the Arrow Flight stream could not be decoded: {problem}"),
                )
            })?;
        }
        Ok(batch)
    });
    match decoded.await {
        Ok(next) => next,
        Err(panic) => Err(invalid_argument(
            ErrorCode::Unspecified,
            format!(
                "the Arrow Flight stream could not be decoded: a record batch is malformed \
                 (Arrow's decoder {panic})"
            ),
        )),
    }
}

fn stream_error(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        FlightError::ExternalError(error) if error.is::<CommitProblem>() => not_committed(error),
        other => invalid_argument(
            ErrorCode::Unspecified,
            format!("the Arrow Flight stream could not be decoded: {other}"),
        ),
    }
}

const NOT_COMMITTED: &str = "the export was not committed, and nothing was delivered";

/// The refusal of a stream that is not committed (`problem` says why).
fn not_committed(problem: impl std::fmt::Display) -> Status {
    invalid_argument(
        ErrorCode::StreamIncomplete,
        format!("{NOT_COMMITTED}: {problem}"),
    )
}

/// What ended a client's stream early, in words for the run's error: the status the stream
/// broke with, or the ingest's own refusal.
fn stream_failure(status: &Status) -> String {
    match status.code() {
        tonic::Code::Cancelled => "the client cancelled the stream".to_owned(),
        tonic::Code::DeadlineExceeded => {
            format!("the stream stopped before its end: {}", status.message())
        }
        tonic::Code::Unknown | tonic::Code::Unavailable => format!(
            "the stream broke before its end: the client cancelled it, or the client or its \
             connection went away ({})",
            status.message()
        ),
        _ => status.message().to_owned(),
    }
}

/// The answer to an export whose idempotency key names `run`: that run, started before.
fn replayed(run: &RunRecord, spec: &ExportSpec) -> Accepted {
    info!(run_id = %run.run_id, "export sent again with its idempotency key; no new run");
    Accepted {
        answer: ExportAccepted {
            run_id: run.run_id.clone(),
            rows: run.rows,
            warnings: spec.warnings.clone(),
            replayed: true,
        },
        held: None,
    }
}
