//! What a run is ready for, decided from what is recorded about it alone: no broker, no store,
//! no clock. The planner loads the records, asks [`decide`], and carries out the [`Decision`]
//! (publishes, records, moves the run on), so every rule of planning is tested here apart
//! from I/O.
//!
//! - A file is ready when every segment (or block, in a split by size) it is made of is
//!   encoded and it can grow no more: a later file has begun, or the stream has ended.
//!   Files are numbered densely from 1 in stream order within each partition (see
//!   `filedrop_core::plan::file_id` for their ids in the run).
//! - Once the stream has ended and every file is planned, the run is encoded.
//! - Once every file is uploaded, the run commits: its marker and manifest keys are decided
//!   here, the manifest's content and the earlier deliveries it replaces by the planner.

use filedrop_core::export::ExportSpec;
use filedrop_core::failure::RunFailure;
use filedrop_core::plan::{
    BlockRef, EncodedSegment, file_count, file_id, file_number_for, pack_by_size,
};
use filedrop_formats::size::SizeBound;
use filedrop_proto::v1::RunState;
use std::collections::BTreeMap;

use crate::store::{FileRecord, RunRecord, SegmentRecord, is_final};

/// What is recorded about a run, as planning needs it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// The run.
    pub run: &'a RunRecord,
    /// Its export, as accepted.
    pub spec: &'a ExportSpec,
    /// Its segments, in stream order.
    pub segments: &'a [SegmentRecord],
    /// Its files planned so far.
    pub files: &'a [FileRecord],
    /// Its partitions' column values by partition index; one partition, 0, with no values,
    /// when the export is not partitioned.
    pub partitions: &'a BTreeMap<u64, Vec<String>>,
    /// In a split by size: the bound of a file's size from its blocks, and the limit.
    pub size_limit: Option<(&'a SizeBound, u64)>,
}

/// A file ready to upload: its record, and the encoded blocks it is made of, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// What to record about it.
    pub record: FileRecord,
    /// Its blocks: (segment index, block of the segment).
    pub blocks: Vec<BlockRef>,
}

/// The keys a run's commit writes besides its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The success marker's key; empty when the export wants none.
    pub marker_key: String,
    /// The manifest's key, when the export wants one.
    pub manifest_key: Option<String>,
}

/// What a run is ready for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Files to upload (then record), in order.
    pub new_files: Vec<NewFile>,
    /// Every file of the run is planned: it moves on from encoding (`Transition::Encoded`).
    pub encoded: bool,
    /// Every file is uploaded: commit (`Transition::Uploaded`).
    pub commit: Option<Commit>,
}

/// Files of a partition ready to upload (number and blocks, in order), and the partition's
/// file count once known.
type ReadyFiles = (Vec<(u64, Vec<BlockRef>)>, Option<u64>);

/// Decides what the run is ready for; a failure fails the run (a key its templates cannot
/// make).
pub fn decide(recorded: &Recorded<'_>) -> Result<Decision, RunFailure> {
    let Recorded {
        run,
        spec,
        segments,
        files,
        partitions,
        size_limit,
    } = *recorded;
    if is_final(run.state) {
        return Ok(Decision::default());
    }
    let run_id = run.run_id.as_str();
    let now = chrono::DateTime::from_timestamp_millis(run.created_at).unwrap_or_default();
    let stream_ended =
        run.segment_count == Some(segments.len() as u64) && run.state != RunState::Receiving;

    let mut new_files = Vec::new();
    let mut total_files = Some(0);
    for (&partition, values) in partitions {
        let segments: Vec<&SegmentRecord> = segments
            .iter()
            .filter(|segment| segment.partition_index == partition)
            .collect();
        let rows = segments.iter().map(|segment| segment.row_count).sum();
        let (ready, total) = match size_limit {
            None => files_by_rows(spec, rows, &segments, stream_ended),
            Some(limit) => files_by_size(spec, rows, &segments, stream_ended, limit),
        };
        total_files = total_files.zip(total).map(|(sum, total)| sum + total);
        let values: BTreeMap<String, String> = spec
            .partition_by
            .iter()
            .cloned()
            .zip(values.iter().cloned())
            .collect();
        for (number, blocks) in ready {
            let file_number = file_id(partition, number);
            if files.iter().any(|file| file.file_number == file_number) {
                continue;
            }
            let object_key = spec.object_key(run_id, now, number, &values)?;
            let rows = blocks
                .iter()
                .map(|block| rows_of_block(&segments, block))
                .sum();
            new_files.push(NewFile {
                record: FileRecord {
                    file_number,
                    partition_index: partition,
                    number_in_partition: number,
                    object_key,
                    rows,
                    uploaded_size: None,
                    sha256: None,
                },
                blocks,
            });
        }
    }

    let Some(total_files) = total_files else {
        return Ok(Decision {
            new_files,
            ..Decision::default()
        });
    };
    let planned = files.len() + new_files.len();
    let encoded = planned as u64 == total_files;
    let state = if encoded && run.state == RunState::Encoding {
        RunState::Uploading
    } else {
        run.state
    };
    let all_uploaded =
        encoded && new_files.is_empty() && files.iter().all(|file| file.uploaded_size.is_some());
    let commit = if all_uploaded && state == RunState::Uploading {
        Some(Commit {
            marker_key: spec.marker_key(run_id, now)?.unwrap_or_default(),
            manifest_key: spec.manifest_key(run_id)?,
        })
    } else {
        None
    };
    Ok(Decision {
        new_files,
        encoded,
        commit,
    })
}

/// The rows of one encoded block.
fn rows_of_block(segments: &[&SegmentRecord], (segment, part): &BlockRef) -> u64 {
    segments
        .iter()
        .find(|record| record.segment_index == *segment)
        .and_then(|record| record.blocks.as_ref()?.get(*part))
        .map(|block| block.rows)
        .unwrap_or(0)
}

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
        // Not encoded yet: its file is not ready, whatever its count.
        let blocks = segment.blocks.as_ref().map_or(1, Vec::len);
        by_file
            .entry(number)
            .or_default()
            .extend((0..blocks).map(|part| (segment.segment_index, part)));
        *encoded.entry(number).or_insert(true) &= segment.encoded();
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
            block_sizes: segment
                .blocks
                .as_ref()
                .map(|blocks| blocks.iter().map(|block| block.size).collect()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{RUN, request, run, spec};
    use crate::store::Block;
    use arrow_schema::{DataType, Field, Schema};
    use filedrop_formats::format::Output;
    use filedrop_proto::v1::{EmptyResult, ErrorCode, Split};
    use std::sync::Arc;

    /// A segment of `rows` rows from `offset`, in one block once encoded.
    fn segment(index: u64, offset: u64, rows: u64, encoded: bool) -> SegmentRecord {
        SegmentRecord {
            segment_index: index,
            partition_index: 0,
            row_offset: offset,
            row_count: rows,
            blocks: encoded.then(|| {
                vec![Block {
                    size: rows * 10,
                    rows,
                }]
            }),
        }
    }

    fn file(number: u64, key: &str, uploaded: bool) -> FileRecord {
        FileRecord {
            file_number: number,
            partition_index: 0,
            number_in_partition: number,
            object_key: key.into(),
            rows: 50_000,
            uploaded_size: uploaded.then_some(500_000),
            sha256: uploaded.then(|| "00".repeat(32)),
        }
    }

    fn unpartitioned() -> BTreeMap<u64, Vec<String>> {
        BTreeMap::from([(0, Vec::new())])
    }

    fn decided(
        run: &RunRecord,
        spec: &ExportSpec,
        segments: &[SegmentRecord],
        files: &[FileRecord],
    ) -> Decision {
        decide(&Recorded {
            run,
            spec,
            segments,
            files,
            partitions: &unpartitioned(),
            size_limit: None,
        })
        .expect("a decision")
    }

    fn keys(decision: &Decision) -> Vec<(u64, &str)> {
        decision
            .new_files
            .iter()
            .map(|new| (new.record.file_number, new.record.object_key.as_str()))
            .collect()
    }

    #[test]
    fn a_file_is_planned_once_a_later_file_has_begun_and_its_segments_are_encoded() {
        let spec = spec(request());
        let segments = [
            segment(0, 0, 30_000, true),
            segment(1, 30_000, 20_000, true),
            segment(2, 50_000, 10_000, false),
        ];
        let decision = decided(&run(RunState::Receiving, None), &spec, &segments, &[]);
        assert_eq!(keys(&decision), [(1, "daily/orders-20261201-0000001.csv")]);
        let first = &decision.new_files[0];
        assert_eq!(first.blocks, [(0, 0), (1, 0)]);
        assert_eq!(first.record.rows, 50_000);
        assert!(!decision.encoded, "the stream goes on");
        assert_eq!(decision.commit, None);
    }

    #[test]
    fn a_file_waits_for_every_one_of_its_segments() {
        let spec = spec(request());
        let segments = [
            segment(0, 0, 30_000, true),
            segment(1, 30_000, 20_000, false),
            segment(2, 50_000, 10_000, true),
        ];
        let decision = decided(&run(RunState::Receiving, None), &spec, &segments, &[]);
        assert_eq!(decision, Decision::default());
    }

    #[test]
    fn the_last_file_is_planned_only_once_the_stream_is_committed() {
        let spec = spec(request());
        let segments = [
            segment(0, 0, 50_000, true),
            segment(1, 50_000, 10_000, true),
        ];
        let planned = [file(1, "daily/orders-20261201-0000001.csv", true)];
        // Every segment staged, but the client has not committed.
        let receiving = decided(
            &run(RunState::Receiving, Some(2)),
            &spec,
            &segments,
            &planned,
        );
        assert_eq!(receiving, Decision::default());
        // A segment still being staged.
        let staging = decided(
            &run(RunState::Encoding, Some(3)),
            &spec,
            &segments,
            &planned,
        );
        assert_eq!(staging, Decision::default());

        let ended = decided(
            &run(RunState::Encoding, Some(2)),
            &spec,
            &segments,
            &planned,
        );
        assert_eq!(keys(&ended), [(2, "daily/orders-20261201-0000002.csv")]);
        assert_eq!(ended.new_files[0].record.rows, 10_000);
        assert!(ended.encoded, "every file is planned");
        assert_eq!(ended.commit, None, "the last file is not uploaded yet");
    }

    #[test]
    fn the_run_commits_once_every_file_is_uploaded() {
        let spec = spec(request());
        let segments = [
            segment(0, 0, 50_000, true),
            segment(1, 50_000, 10_000, true),
        ];
        let one_pending = [
            file(1, "daily/orders-20261201-0000001.csv", true),
            file(2, "daily/orders-20261201-0000002.csv", false),
        ];
        let waiting = decided(
            &run(RunState::Uploading, Some(2)),
            &spec,
            &segments,
            &one_pending,
        );
        assert_eq!(
            waiting,
            Decision {
                encoded: true,
                ..Decision::default()
            }
        );

        let uploaded = [
            file(1, "daily/orders-20261201-0000001.csv", true),
            file(2, "daily/orders-20261201-0000002.csv", true),
        ];
        let commit = decided(
            &run(RunState::Uploading, Some(2)),
            &spec,
            &segments,
            &uploaded,
        )
        .commit
        .expect("a commit");
        assert_eq!(commit.marker_key, "daily/orders-20261201-.csv.DONE");
        assert_eq!(
            commit.manifest_key.as_deref(),
            Some(format!("daily/manifest-exports-{RUN}.json").as_str())
        );
    }

    #[test]
    fn a_run_committing_or_over_is_not_planned_again() {
        let spec = spec(request());
        let segments = [segment(0, 0, 10_000, true)];
        let uploaded = [file(1, "daily/orders-20261201-0000001.csv", true)];
        for state in [
            RunState::Committing,
            RunState::Succeeded,
            RunState::Failed,
            RunState::Cancelled,
        ] {
            let decision = decided(&run(state, Some(1)), &spec, &segments, &uploaded);
            assert_eq!(decision.commit, None, "{state:?}");
            assert!(decision.new_files.is_empty(), "{state:?}");
        }
    }

    #[test]
    fn without_a_marker_or_manifest_the_commit_writes_the_files_alone() {
        let mut request = request();
        request.success_file = None;
        request.manifest = Some(filedrop_proto::v1::ManifestOptions { disabled: true });
        let spec = spec(request);
        let segments = [segment(0, 0, 10_000, true)];
        let uploaded = [file(1, "daily/orders-20261201-0000001.csv", true)];
        let commit = decided(
            &run(RunState::Uploading, Some(1)),
            &spec,
            &segments,
            &uploaded,
        )
        .commit
        .expect("a commit");
        assert_eq!(
            commit,
            Commit {
                marker_key: String::new(),
                manifest_key: None
            }
        );
    }

    #[test]
    fn an_empty_result_writes_one_empty_file_or_commits_with_none() {
        let written = decided(
            &run(RunState::Encoding, Some(0)),
            &spec(request()),
            &[],
            &[],
        );
        assert_eq!(keys(&written), [(1, "daily/orders-20261201-0000001.csv")]);
        assert_eq!(written.new_files[0].blocks, []);
        assert_eq!(written.new_files[0].record.rows, 0);

        let mut skipped = request();
        skipped.empty_result = EmptyResult::SkipFiles.into();
        let skipped = decided(&run(RunState::Encoding, Some(0)), &spec(skipped), &[], &[]);
        assert!(skipped.new_files.is_empty());
        assert!(skipped.encoded);
        assert!(
            skipped.commit.is_some(),
            "nothing to upload: the marker goes at once"
        );
    }

    #[test]
    fn partitions_number_and_name_their_files_apart() {
        let mut request = request();
        request.partition_by = vec!["region".into()];
        request.filename_template =
            "{{partition.region}}/orders-{{now|format:'yyyyMMdd'}}-{{file_number}}.csv".into();
        let spec = spec(request);
        let mut segments = [
            segment(0, 0, 50_000, true),
            segment(1, 0, 20_000, true),
            segment(2, 50_000, 5_000, true),
        ];
        segments[1].partition_index = 1;
        let partitions = BTreeMap::from([(0, vec!["eu".into()]), (1, vec!["us".into()])]);
        let run = run(RunState::Encoding, Some(3));
        let decision = decide(&Recorded {
            run: &run,
            spec: &spec,
            segments: &segments,
            files: &[],
            partitions: &partitions,
            size_limit: None,
        })
        .expect("a decision");
        assert_eq!(
            keys(&decision),
            [
                (file_id(0, 1), "daily/eu/orders-20261201-0000001.csv"),
                (file_id(0, 2), "daily/eu/orders-20261201-0000002.csv"),
                (file_id(1, 1), "daily/us/orders-20261201-0000001.csv"),
            ]
        );
        assert_eq!(decision.new_files[1].blocks, [(2, 0)]);
        assert_eq!(decision.new_files[2].blocks, [(1, 0)]);
        assert!(decision.encoded);
    }

    #[test]
    fn a_split_by_size_fills_files_with_encoded_blocks_up_to_the_limit() {
        let mut request = request();
        request.split = Some(Split {
            megabytes_per_file: 1,
            ..Default::default()
        });
        let spec = spec(request);
        let output = Output::from_encoding(&spec.encoding).expect("an output");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let bound = SizeBound::new(&output, &schema).expect("a bound");
        let blocks = |index, sizes: &[u64]| SegmentRecord {
            segment_index: index,
            partition_index: 0,
            row_offset: 0,
            row_count: 1_000 * sizes.len() as u64,
            blocks: Some(
                sizes
                    .iter()
                    .map(|&size| Block { size, rows: 1_000 })
                    .collect(),
            ),
        };
        let segments = [
            blocks(0, &[400_000, 400_000, 400_000]),
            blocks(1, &[400_000]),
        ];
        let run = run(RunState::Encoding, Some(2));
        let decision = decide(&Recorded {
            run: &run,
            spec: &spec,
            segments: &segments,
            files: &[],
            partitions: &unpartitioned(),
            size_limit: Some((&bound, 1_000_000)),
        })
        .expect("a decision");
        let blocks: Vec<&[BlockRef]> = decision
            .new_files
            .iter()
            .map(|new| new.blocks.as_slice())
            .collect();
        assert_eq!(blocks, [&[(0, 0), (0, 1)][..], &[(0, 2), (1, 0)][..]]);
        assert_eq!(decision.new_files[1].record.rows, 2_000);
        assert!(decision.encoded);
    }

    #[test]
    fn a_key_the_templates_cannot_make_fails_the_run() {
        let mut request = request();
        request.filename_template = "orders-{{file_number}}-{{partition.region}}.csv".into();
        request.partition_by = vec!["region".into()];
        let spec = spec(request);
        let segments = [segment(0, 0, 10_000, true)];
        let run = run(RunState::Encoding, Some(1));
        // A partition whose value is missing from the record.
        let partitions = BTreeMap::from([(0, Vec::new())]);
        let failure = decide(&Recorded {
            run: &run,
            spec: &spec,
            segments: &segments,
            files: &[],
            partitions: &partitions,
            size_limit: None,
        })
        .expect_err("no key");
        assert_eq!(failure.code, ErrorCode::InvalidTemplate, "{failure:?}");
    }
}
