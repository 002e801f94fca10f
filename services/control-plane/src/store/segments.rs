//! A run's partitions and the segments its stream was cut into, with their encoded blocks.

use super::{RunStore, StoreError, now_ms, query};
use sqlx::Row;
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
    /// Whether its block is encoded.
    pub encoded: bool,
    /// The sizes of its blocks, in order, once encoded: one block, or several in a split by
    /// size.
    pub block_sizes: Vec<u64>,
    /// The rows of its blocks, in order, once encoded.
    pub block_rows: Vec<u64>,
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
        let receiving = query(
            "UPDATE runs SET rows = ?, updated_at = ? WHERE run_id = ? AND state = 'receiving'",
        )
        .bind(rows_received as i64)
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(receiving.rows_affected() == 1)
    }

    /// Records an encoded segment: the total size of its blocks and, when it is several
    /// blocks, each one's size and rows.
    pub async fn segment_encoded(
        &self,
        run_id: &str,
        segment_index: u64,
        block_size: u64,
        block_sizes: &[u64],
        block_rows: &[u64],
    ) -> Result<(), StoreError> {
        let joined = |numbers: &[u64]| {
            (!numbers.is_empty()).then(|| {
                numbers
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        };
        query(
            "UPDATE segments SET encoded = 1, block_size = ?, block_sizes = ?, block_rows = ? \
             WHERE run_id = ? AND segment_index = ?",
        )
        .bind(block_size as i64)
        .bind(joined(block_sizes))
        .bind(joined(block_rows))
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
        let numbers = |text: String| -> Vec<u64> {
            text.split(',')
                .filter_map(|number| number.parse().ok())
                .collect()
        };
        Ok(rows
            .iter()
            .map(|row| SegmentRecord {
                block_rows: match row.get::<Option<String>, _>("block_rows") {
                    Some(rows) => numbers(rows),
                    None => vec![row.get::<i64, _>("row_count") as u64],
                },
                segment_index: row.get::<i64, _>("segment_index") as u64,
                partition_index: row.get::<i64, _>("partition_index") as u64,
                row_offset: row.get::<i64, _>("row_offset") as u64,
                row_count: row.get::<i64, _>("row_count") as u64,
                encoded: row.get::<i64, _>("encoded") == 1,
                block_sizes: match row.get::<Option<String>, _>("block_sizes") {
                    Some(sizes) => numbers(sizes),
                    None => row
                        .get::<Option<i64>, _>("block_size")
                        .map(|size| vec![size as u64])
                        .unwrap_or_default(),
                },
            })
            .collect())
    }
}
