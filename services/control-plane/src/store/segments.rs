//! A run's partitions and the segments its stream was cut into, with their encoded blocks.

use super::states::state_in;
use super::{RunStore, StoreError, now_ms, query};
use filedrop_proto::jobs::v1::SegmentEncoded;
use filedrop_proto::v1::RunState;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

/// A staged segment.
#[derive(Debug, Clone)]
pub struct SegmentRecord {
    /// Its position in the stream.
    pub segment_index: u64,
    /// The partition its rows belong to (0 when the export is not partitioned).
    pub partition_index: u64,
    /// Its first row in its partition (in the run, when the export is not partitioned).
    pub row_offset: u64,
    /// Its rows.
    pub row_count: u64,
    /// Its encoded blocks, in order: one, or several in a split by size; `None` until it is
    /// encoded.
    pub blocks: Option<Vec<Block>>,
}

impl SegmentRecord {
    /// Whether it is encoded.
    pub fn encoded(&self) -> bool {
        self.blocks.is_some()
    }
}

/// An encoded block of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Its size in bytes.
    pub size: u64,
    /// Its rows.
    pub rows: u64,
}

/// How a segment was encoded, as its encoder reported it (`SegmentEncoded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodedBlocks {
    /// One block of the whole segment, of this size.
    Whole {
        /// Its size in bytes.
        size: u64,
    },
    /// Several blocks (a split by size), in order.
    Split(Vec<Block>),
}

impl EncodedBlocks {
    /// The blocks an encoder reported: the event lists each block only when there are
    /// several, and its total size always.
    pub fn of(encoded: &SegmentEncoded) -> Self {
        if encoded.block_sizes.is_empty() {
            return Self::Whole {
                size: encoded.block_size,
            };
        }
        Self::Split(
            encoded
                .block_sizes
                .iter()
                .zip(&encoded.block_rows)
                .map(|(&size, &rows)| Block { size, rows })
                .collect(),
        )
    }
}

/// Numbers as a text column holds them: comma-separated, in order.
fn numbers_text(numbers: impl Iterator<Item = u64>) -> String {
    numbers.map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// The numbers of a text column (see [`numbers_text`]).
fn numbers_of(text: &str) -> Vec<u64> {
    text.split(',')
        .filter_map(|number| number.parse().ok())
        .collect()
}

/// A segment to record.
#[derive(Debug, Clone)]
pub struct NewSegment {
    /// Its position in the stream.
    pub segment_index: u64,
    /// The partition its rows belong to.
    pub partition_index: u64,
    /// Its first row in its partition.
    pub row_offset: u64,
    /// Its rows.
    pub row_count: u64,
}

impl RunStore {
    /// Records a partition of a partitioned run: its key text, one per partition column.
    pub async fn add_partition(
        &self,
        run_id: &str,
        partition_index: u64,
        key_values: &[String],
    ) -> Result<(), StoreError> {
        let key_values = serde_json::to_string(key_values).unwrap_or_default();
        query(
            "INSERT INTO partitions (run_id, partition_index, key_values) \
             VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(partition_index as i64)
        .bind(key_values)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The partitions of a partitioned run: each one's key text by index.
    pub async fn partitions(&self, run_id: &str) -> Result<BTreeMap<u64, Vec<String>>, StoreError> {
        let rows = query(
            "SELECT partition_index, key_values FROM partitions WHERE run_id = ? \
             ORDER BY partition_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let values: String = row.get("key_values");
                (
                    row.get::<i64, _>("partition_index") as u64,
                    serde_json::from_str(&values).unwrap_or_default(),
                )
            })
            .collect())
    }

    /// Records a staged segment, and that the run has received `rows_received` rows; says
    /// whether the run is still receiving (not cancelled or failed meanwhile).
    pub async fn add_segment(
        &self,
        run_id: &str,
        segment: &NewSegment,
        rows_received: u64,
    ) -> Result<bool, StoreError> {
        query(
            "INSERT INTO segments (run_id, segment_index, partition_index, row_offset, \
             row_count) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(segment.segment_index as i64)
        .bind(segment.partition_index as i64)
        .bind(segment.row_offset as i64)
        .bind(segment.row_count as i64)
        .execute(&self.pool)
        .await?;
        let receiving = query(&format!(
            "UPDATE runs SET rows = ?, updated_at = ? WHERE run_id = ? AND {}",
            state_in(&[RunState::Receiving])
        ))
        .bind(rows_received as i64)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(receiving.rows_affected() == 1)
    }

    /// Records an encoded segment's blocks. Stored as the total size of its blocks and, when
    /// it is several, each one's size and rows (comma-separated, see [`numbers_text`]).
    pub async fn segment_encoded(
        &self,
        run_id: &str,
        segment_index: u64,
        blocks: &EncodedBlocks,
    ) -> Result<(), StoreError> {
        let (total, sizes, rows) = match blocks {
            EncodedBlocks::Whole { size } => (*size, None, None),
            EncodedBlocks::Split(blocks) => (
                blocks.iter().map(|block| block.size).sum(),
                Some(numbers_text(blocks.iter().map(|block| block.size))),
                Some(numbers_text(blocks.iter().map(|block| block.rows))),
            ),
        };
        query(
            "UPDATE segments SET encoded = 1, block_size = ?, block_sizes = ?, block_rows = ? \
             WHERE run_id = ? AND segment_index = ?",
        )
        .bind(total as i64)
        .bind(sizes)
        .bind(rows)
        .bind(run_id)
        .bind(segment_index as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The run's segments, in stream order.
    pub async fn segments(&self, run_id: &str) -> Result<Vec<SegmentRecord>, StoreError> {
        let rows = query(
            "SELECT segment_index, partition_index, row_offset, row_count, encoded, block_size, \
             block_sizes, block_rows FROM segments WHERE run_id = ? ORDER BY segment_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(segment_of_row).collect())
    }
}

/// A segment as its row stores it: a segment encoded as one block holds every row.
fn segment_of_row(row: &AnyRow) -> SegmentRecord {
    let row_count = row.get::<i64, _>("row_count") as u64;
    let blocks = (row.get::<i64, _>("encoded") == 1).then(|| {
        let sizes = row.get::<Option<String>, _>("block_sizes");
        let rows = row.get::<Option<String>, _>("block_rows");
        match (sizes, rows) {
            (Some(sizes), Some(rows)) => numbers_of(&sizes)
                .into_iter()
                .zip(numbers_of(&rows))
                .map(|(size, rows)| Block { size, rows })
                .collect(),
            _ => vec![Block {
                size: row.get::<Option<i64>, _>("block_size").unwrap_or(0) as u64,
                rows: row_count,
            }],
        }
    });
    SegmentRecord {
        segment_index: row.get::<i64, _>("segment_index") as u64,
        partition_index: row.get::<i64, _>("partition_index") as u64,
        row_offset: row.get::<i64, _>("row_offset") as u64,
        row_count,
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoder_lists_blocks_only_when_there_are_several() {
        let whole = SegmentEncoded {
            block_size: 99,
            ..SegmentEncoded::default()
        };
        assert_eq!(EncodedBlocks::of(&whole), EncodedBlocks::Whole { size: 99 });
        let split = SegmentEncoded {
            block_size: 30,
            block_sizes: vec![10, 20],
            block_rows: vec![4, 6],
            ..SegmentEncoded::default()
        };
        assert_eq!(
            EncodedBlocks::of(&split),
            EncodedBlocks::Split(vec![
                Block { size: 10, rows: 4 },
                Block { size: 20, rows: 6 }
            ])
        );
    }

    #[test]
    fn numbers_read_back_as_they_were_written() {
        let numbers = [0, 7, u64::MAX];
        assert_eq!(
            numbers_text(numbers.into_iter()),
            format!("0,7,{}", u64::MAX)
        );
        assert_eq!(numbers_of(&numbers_text(numbers.into_iter())), numbers);
    }
}
