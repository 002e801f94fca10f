//! A run's planned files and their uploads.

use super::{RunStore, StoreError, query};
use sqlx::Row;

/// A planned file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Its number in the run, from 1.
    pub file_number: u64,
    /// The partition it belongs to.
    pub partition_index: u64,
    /// Its number in its partition, from 1.
    pub number_in_partition: u64,
    /// Its key at the destination.
    pub object_key: String,
    /// Its rows.
    pub rows: u64,
    /// Its size once uploaded.
    pub uploaded_size: Option<u64>,
    /// The SHA-256 of its bytes once uploaded, lowercase hexadecimal.
    pub sha256: Option<String>,
}

impl RunStore {
    /// The run's planned files, by number.
    pub async fn files(&self, run_id: &str) -> Result<Vec<FileRecord>, StoreError> {
        let rows = query(
            "SELECT file_number, partition_index, number_in_partition, object_key, uploaded, \
             size, rows, sha256 FROM files WHERE run_id = ? ORDER BY file_number",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| FileRecord {
                file_number: row.get::<i64, _>("file_number") as u64,
                partition_index: row.get::<i64, _>("partition_index") as u64,
                number_in_partition: row
                    .get::<Option<i64>, _>("number_in_partition")
                    .unwrap_or_else(|| row.get::<i64, _>("file_number"))
                    as u64,
                object_key: row.get("object_key"),
                rows: row.get::<i64, _>("rows") as u64,
                uploaded_size: (row.get::<i64, _>("uploaded") == 1)
                    .then(|| row.get::<Option<i64>, _>("size").unwrap_or(0) as u64),
                sha256: row.get("sha256"),
            })
            .collect())
    }

    /// Records a planned file (its upload task is published).
    pub async fn add_file(&self, run_id: &str, file: &FileRecord) -> Result<(), StoreError> {
        query(
            "INSERT INTO files (run_id, file_number, partition_index, \
             number_in_partition, object_key, rows) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(file.file_number as i64)
        .bind(file.partition_index as i64)
        .bind(file.number_in_partition as i64)
        .bind(&file.object_key)
        .bind(file.rows as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records an uploaded file: its size and SHA-256. Says whether the file was known (its
    /// planning step had recorded it).
    pub async fn file_uploaded(
        &self,
        run_id: &str,
        file_number: u64,
        size: u64,
        sha256: &str,
    ) -> Result<bool, StoreError> {
        let known = query(
            "UPDATE files SET uploaded = 1, size = ?, sha256 = ? WHERE run_id = ? AND file_number = ?",
        )
        .bind(size as i64)
        .bind((!sha256.is_empty()).then_some(sha256))
            .bind(run_id)
            .bind(file_number as i64)
            .execute(&self.pool)
            .await?;
        self.touch(run_id).await?;
        Ok(known.rows_affected() == 1)
    }
}
