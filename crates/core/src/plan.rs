//! File planning for row splits. The ingest cuts segments at file boundaries, so a segment
//! belongs to exactly one file and a file is a contiguous run of segments.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
