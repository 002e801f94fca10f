//! File planning.
//!
//! - Row splits: the ingest cuts segments at file boundaries, so a segment belongs to exactly
//!   one file and a file is a contiguous run of segments; files follow from row offsets.
//! - Partitions: each partition's files are planned as above, on its own segments, and
//!   numbered from 1 within it.
//! - Size splits: files follow from the encoded blocks' sizes. [`pack_by_size`] fills files
//!   with consecutive blocks, in stream order, while the file's size bound stays at or under
//!   the limit; a file is closed when the next block does not fit, or at the end. Packing
//!   is a pure function of the sizes, so planning it again after every event gives the same
//!   files.

/// A file's id in its run: its number when the export is not partitioned (partition 0), and
/// otherwise the partition's index above the number's 32 bits. Derived rather than allocated,
/// so that a file planned again (after a restart) gets the same id.
pub fn file_id(partition_index: u64, number_in_partition: u64) -> u64 {
    (partition_index << 32) | number_in_partition
}

/// The number (from 1) of the file holding the segment that starts at `row_offset`.
pub fn file_number_for(row_offset: u64, rows_per_file: Option<u64>) -> u64 {
    match rows_per_file {
        Some(rows) => row_offset / rows + 1,
        None => 1,
    }
}

/// How many rows may follow `row_offset` before the next file boundary (`None`: no boundary).
pub fn rows_until_boundary(row_offset: u64, rows_per_file: Option<u64>) -> Option<u64> {
    rows_per_file.map(|rows| rows - row_offset % rows)
}

/// How many files a run of `total_rows` rows delivers. An empty run delivers one file (a
/// header-only CSV, a schema-only Parquet file) unless `skip_empty`.
pub fn file_count(total_rows: u64, rows_per_file: Option<u64>, skip_empty: bool) -> u64 {
    if total_rows == 0 && skip_empty {
        return 0;
    }
    match rows_per_file {
        Some(rows) => total_rows.div_ceil(rows).max(1),
        None => 1,
    }
}

/// A block of a segment: the segment's index and the block's part (0 for the first).
pub type BlockRef = (u64, usize);

/// A segment as size planning sees it.
#[derive(Debug, Clone)]
pub struct EncodedSegment {
    /// Its position in the stream.
    pub index: u64,
    /// Its blocks' sizes, in order; `None` while it is not encoded.
    pub block_sizes: Option<Vec<u64>>,
}

/// The files of a size split known so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizePlan {
    /// The closed files, in order (file `n` is `files[n - 1]`): their blocks.
    pub files: Vec<Vec<BlockRef>>,
    /// Set once every block is known: the number of files.
    pub total: Option<u64>,
}

/// Packs encoded blocks into files in stream order. `fits(bytes, blocks)` says whether a file
/// of `blocks` blocks holding `bytes` bytes stays within the limit; a block is never left
/// alone outside a file, since the encoder made each one fit on its own. Packing stops at the
/// first segment not yet encoded. With `stream_ended` and every segment encoded, the last file
/// is closed too (an empty run gets one empty file, or none with `skip_empty`).
pub fn pack_by_size(
    segments: &[EncodedSegment],
    stream_ended: bool,
    skip_empty: bool,
    total_rows: u64,
    fits: impl Fn(u64, u64) -> bool,
) -> SizePlan {
    let mut files = Vec::new();
    let mut current: Vec<BlockRef> = Vec::new();
    let mut bytes = 0;
    let mut every_segment_encoded = true;
    for segment in segments {
        let Some(sizes) = &segment.block_sizes else {
            every_segment_encoded = false;
            break;
        };
        for (part, &size) in sizes.iter().enumerate() {
            if !current.is_empty() && !fits(bytes + size, current.len() as u64 + 1) {
                files.push(std::mem::take(&mut current));
                bytes = 0;
            }
            current.push((segment.index, part));
            bytes += size;
        }
    }
    let total = (stream_ended && every_segment_encoded).then(|| {
        if !(total_rows == 0 && skip_empty) {
            files.push(current);
        }
        files.len() as u64
    });
    SizePlan { files, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(sizes: &[Option<&[u64]>]) -> Vec<EncodedSegment> {
        sizes
            .iter()
            .enumerate()
            .map(|(index, sizes)| EncodedSegment {
                index: index as u64,
                block_sizes: sizes.map(<[u64]>::to_vec),
            })
            .collect()
    }

    #[test]
    fn packs_blocks_while_the_file_fits() {
        // At most 100 bytes, and 5 bytes of framing per block.
        let fits = |bytes: u64, blocks: u64| bytes + 5 * blocks <= 100;
        let all = segments(&[Some(&[40]), Some(&[40, 30]), Some(&[10]), Some(&[90])]);
        let plan = pack_by_size(&all, true, false, 10, fits);
        assert_eq!(
            plan.files,
            [vec![(0, 0), (1, 0)], vec![(1, 1), (2, 0)], vec![(3, 0)]]
        );
        assert_eq!(plan.total, Some(3));

        // Not yet ended: the open file is not closed, and packing stops at a gap.
        let plan = pack_by_size(&all, false, false, 10, fits);
        assert_eq!(plan.files.len(), 2);
        assert_eq!(plan.total, None);
        let gap = segments(&[Some(&[40]), Some(&[40, 30]), None, Some(&[90])]);
        let plan = pack_by_size(&gap, true, false, 10, fits);
        assert_eq!(plan.files, [vec![(0, 0), (1, 0)]]);
        assert_eq!(plan.total, None);
    }

    #[test]
    fn an_empty_run_gets_one_empty_file_unless_skipped() {
        let fits = |_: u64, _: u64| true;
        let empty = segments(&[Some(&[0])]);
        assert_eq!(
            pack_by_size(&empty, true, false, 0, fits),
            SizePlan {
                files: vec![vec![(0, 0)]],
                total: Some(1)
            }
        );
        assert_eq!(pack_by_size(&[], true, false, 0, fits).files, [vec![]]);
        assert_eq!(
            pack_by_size(&empty, true, true, 0, fits),
            SizePlan {
                files: vec![],
                total: Some(0)
            }
        );
    }

    #[test]
    fn numbers_files_densely_from_one() {
        let split = Some(250_000);
        assert_eq!(file_number_for(0, split), 1);
        assert_eq!(file_number_for(249_999, split), 1);
        assert_eq!(file_number_for(250_000, split), 2);
        assert_eq!(file_number_for(999_999, split), 4);
        assert_eq!(file_number_for(123, None), 1);
    }

    #[test]
    fn boundaries_and_counts() {
        assert_eq!(rows_until_boundary(0, Some(100)), Some(100));
        assert_eq!(rows_until_boundary(130, Some(100)), Some(70));
        assert_eq!(rows_until_boundary(130, None), None);
        assert_eq!(file_count(1_000_000, Some(250_000), false), 4);
        assert_eq!(file_count(1_000_001, Some(250_000), true), 5);
        assert_eq!(file_count(0, Some(250_000), false), 1);
        assert_eq!(file_count(0, None, true), 0);
        assert_eq!(file_count(10, None, true), 1);
    }

    #[test]
    fn file_ids_are_numbers_without_partitions_and_distinct_across_partitions() {
        assert_eq!(file_id(0, 7), 7);
        assert_eq!(file_id(1, 1), (1 << 32) + 1);
        assert_ne!(file_id(1, 2), file_id(2, 1));
    }
}
