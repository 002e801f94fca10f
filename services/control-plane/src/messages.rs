//! The task messages the control plane publishes to the workers, each built here only: an
//! encode task per staged segment (from the stream, or again on a retry), an upload task per
//! planned file, and the finalize task that commits a run or cleans up after one.

use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_core::plan::BlockRef;
use filedrop_formats::format::Output;
use filedrop_formats::segment::schema_from_bytes;
use filedrop_formats::size::SizeBound;
use filedrop_proto::jobs::v1::{
    DeliveredFile, DeliveredObject, EncodeTask, FinalizeTask, UploadTask,
};
use filedrop_proto::v1::ErrorCode;
use filedrop_runtime::staging::{block_key, block_part_key, segment_key};
use std::collections::{BTreeMap, BTreeSet};

use crate::store::{FileRecord, NewSegment, RunRecord};

/// The size bound of the files of `spec` with rows of `schema` (Arrow IPC, as a run keeps it).
pub fn size_bound(spec: &ExportSpec, schema: &[u8]) -> Result<SizeBound, RunFailure> {
    let output = Output::from_encoding(&spec.encoding)
        .map_err(|problem| RunFailure::internal(format!("reading the format: {problem}")))?;
    let schema = schema_from_bytes(schema)
        .map_err(|error| RunFailure::internal(format!("the stored schema: {error}")))?;
    SizeBound::new(&output, &schema)
        .map_err(|error| RunFailure::internal(format!("bounding file sizes: {error}")))
}

/// The largest block an encoder may write in a split by size (`EncodeTask.max_block_bytes`),
/// so that any block fits a file under the limit; 0 (no limit) when files are not split by
/// size. Refused when a file of this format without rows is already over the limit.
pub fn max_block_bytes(spec: &ExportSpec, bound: &SizeBound) -> Result<u64, RunFailure> {
    let Some(limit) = spec.bytes_per_file else {
        return Ok(0);
    };
    bound.largest_block(limit).ok_or_else(|| {
        RunFailure::new(
            ErrorCode::FileTooLarge,
            "split.megabytes_per_file: a file of this format without rows is already larger \
             than the limit; raise it",
        )
    })
}

/// The encode task of a staged segment.
pub fn encode(
    run_id: &str,
    spec: &ExportSpec,
    segment: &NewSegment,
    max_block_bytes: u64,
) -> EncodeTask {
    EncodeTask {
        run_id: run_id.to_owned(),
        segment_index: segment.segment_index,
        segment_key: segment_key(run_id, segment.segment_index),
        block_key: block_key(run_id, segment.segment_index),
        row_offset: segment.row_offset,
        row_count: segment.row_count,
        encoding: Some(spec.encoding.clone()),
        max_block_bytes,
    }
}

/// The upload task of a planned file made of `blocks`.
pub fn upload(
    run: &RunRecord,
    spec: &ExportSpec,
    file: &FileRecord,
    blocks: &[BlockRef],
    sealed_destination: Vec<u8>,
) -> UploadTask {
    let run_id = run.run_id.as_str();
    UploadTask {
        run_id: run_id.to_owned(),
        file_number: file.file_number,
        object_key: file.object_key.clone(),
        block_keys: blocks
            .iter()
            .map(|(segment, part)| block_part_key(&block_key(run_id, *segment), *part))
            .collect(),
        arrow_schema: run.arrow_schema.clone(),
        encoding: Some(spec.encoding.clone()),
        sealed_destination,
    }
}

/// What a commit writes besides the run's files, and what it replaces.
#[derive(Debug)]
pub struct CommitObjects<'a> {
    /// The success marker's key; empty for none.
    pub marker_key: String,
    /// The manifest's key; empty for none.
    pub manifest_key: String,
    /// The manifest's content.
    pub manifest: Vec<u8>,
    /// Earlier runs' objects at the keys this run writes and at its place, by run: (key,
    /// entity tag).
    pub earlier: &'a BTreeMap<String, Vec<(String, String)>>,
    /// Every key this run writes (files, manifest, marker): of the earlier objects, those
    /// at another key are deleted after the marker.
    pub rewritten: &'a BTreeSet<String>,
}

/// The finalize task that commits a run whose files are all uploaded.
pub fn commit(
    run: &RunRecord,
    spec: &ExportSpec,
    files: &[FileRecord],
    objects: CommitObjects<'_>,
    sealed_destination: Vec<u8>,
) -> FinalizeTask {
    let superseded = objects
        .earlier
        .values()
        .flatten()
        .filter(|(key, _)| !objects.rewritten.contains(key))
        .map(|(object_key, e_tag)| DeliveredObject {
            object_key: object_key.clone(),
            e_tag: e_tag.clone(),
        })
        .collect();
    FinalizeTask {
        run_id: run.run_id.clone(),
        files: delivered_files(files),
        marker_key: objects.marker_key,
        sealed_destination,
        destination_prefix: spec.destination.prefix.clone(),
        manifest_key: objects.manifest_key,
        manifest: objects.manifest,
        superseded,
        superseded_runs: objects.earlier.keys().cloned().collect(),
        ..FinalizeTask::default()
    }
}

/// What a cleanup task asks of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
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

/// The finalize task that cleans up after an ended run at its destination
/// (`FinalizeTask.run_failed`, `run_cancelled` or `pending_only`).
pub fn cleanup(
    run: &RunRecord,
    spec: &ExportSpec,
    files: &[FileRecord],
    cleanup: Cleanup,
    sealed_destination: Vec<u8>,
) -> FinalizeTask {
    FinalizeTask {
        run_id: run.run_id.clone(),
        files: delivered_files(files)
            .into_iter()
            .map(|file| DeliveredFile { size: 0, ..file })
            .collect(),
        sealed_destination,
        destination_prefix: spec.destination.prefix.clone(),
        run_failed: matches!(cleanup, Cleanup::Failed { .. }),
        run_cancelled: cleanup == Cleanup::Cancelled,
        pending_only: cleanup == Cleanup::PendingOnly,
        delete_staging: cleanup
            == Cleanup::Failed {
                delete_staging: true,
            },
        ..FinalizeTask::default()
    }
}

/// The run's files as a finalize task lists them, with their uploaded sizes.
fn delivered_files(files: &[FileRecord]) -> Vec<DeliveredFile> {
    files
        .iter()
        .map(|file| DeliveredFile {
            object_key: file.object_key.clone(),
            size: file.uploaded_size.unwrap_or_default(),
            file_number: file.file_number,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{RUN, request, run, spec};
    use filedrop_proto::v1::RunState;

    fn file(number: u64, uploaded_size: Option<u64>) -> FileRecord {
        FileRecord {
            file_number: number,
            partition_index: 0,
            number_in_partition: number,
            object_key: format!("daily/orders-{number}.csv"),
            rows: 10,
            uploaded_size,
            sha256: None,
        }
    }

    #[test]
    fn an_encode_task_names_the_segment_and_its_block_in_staging() {
        let segment = NewSegment {
            segment_index: 3,
            partition_index: 0,
            row_offset: 150_000,
            row_count: 50_000,
        };
        let task = encode(RUN, &spec(request()), &segment, 4_096);
        assert_eq!(task.segment_key, segment_key(RUN, 3));
        assert_eq!(task.block_key, block_key(RUN, 3));
        assert_eq!((task.row_offset, task.row_count), (150_000, 50_000));
        assert_eq!(task.max_block_bytes, 4_096);
        assert!(task.encoding.is_some());
    }

    #[test]
    fn an_upload_task_lists_its_blocks_in_order() {
        let run = run(RunState::Encoding, None);
        let task = upload(
            &run,
            &spec(request()),
            &file(2, None),
            &[(4, 1), (4, 2), (5, 0)],
            b"sealed".to_vec(),
        );
        let block = |segment, part| block_part_key(&block_key(RUN, segment), part);
        assert_eq!(task.block_keys, [block(4, 1), block(4, 2), block(5, 0)]);
        assert_eq!(
            (task.file_number, task.object_key.as_str()),
            (2, "daily/orders-2.csv")
        );
        assert_eq!(task.sealed_destination, b"sealed");
    }

    #[test]
    fn a_commit_deletes_only_the_earlier_objects_it_does_not_rewrite() {
        let run = run(RunState::Uploading, Some(2));
        let files = [file(1, Some(100)), file(2, Some(50))];
        let earlier = BTreeMap::from([
            (
                "earlier-a".to_owned(),
                vec![
                    ("daily/orders-1.csv".to_owned(), "\"a1\"".to_owned()),
                    ("daily/orders-3.csv".to_owned(), "\"a3\"".to_owned()),
                ],
            ),
            (
                "earlier-b".to_owned(),
                vec![("daily/orders.DONE".to_owned(), "\"b\"".to_owned())],
            ),
        ]);
        let rewritten = BTreeSet::from([
            "daily/orders-1.csv".to_owned(),
            "daily/orders-2.csv".to_owned(),
            "daily/orders.DONE".to_owned(),
        ]);
        let task = commit(
            &run,
            &spec(request()),
            &files,
            CommitObjects {
                marker_key: "daily/orders.DONE".into(),
                manifest_key: String::new(),
                manifest: Vec::new(),
                earlier: &earlier,
                rewritten: &rewritten,
            },
            Vec::new(),
        );
        let superseded: Vec<&str> = task
            .superseded
            .iter()
            .map(|object| object.object_key.as_str())
            .collect();
        assert_eq!(superseded, ["daily/orders-3.csv"]);
        assert_eq!(task.superseded_runs, ["earlier-a", "earlier-b"]);
        let sizes: Vec<u64> = task.files.iter().map(|file| file.size).collect();
        assert_eq!(sizes, [100, 50]);
        assert_eq!(task.destination_prefix, "daily/");
        assert!(!(task.run_failed || task.run_cancelled || task.pending_only));
    }

    #[test]
    fn a_cleanup_says_what_ended_the_run_and_whether_staging_goes() {
        let run = run(RunState::Failed, Some(1));
        let files = [file(1, Some(100))];
        let flags = |kind| {
            let task = cleanup(&run, &spec(request()), &files, kind, Vec::new());
            assert_eq!(task.files[0].size, 0, "{kind:?}");
            assert!(task.marker_key.is_empty(), "{kind:?}");
            (
                task.run_failed,
                task.run_cancelled,
                task.pending_only,
                task.delete_staging,
            )
        };
        let failed = |delete_staging| Cleanup::Failed { delete_staging };
        assert_eq!(flags(failed(true)), (true, false, false, true));
        assert_eq!(flags(failed(false)), (true, false, false, false));
        assert_eq!(flags(Cleanup::Cancelled), (false, true, false, false));
        assert_eq!(flags(Cleanup::PendingOnly), (false, false, true, false));
    }
}
