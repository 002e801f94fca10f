//! How a run's rows are split across files (rows or megabytes per file), and what a run
//! without rows delivers.

use super::InvalidRequest;
use filedrop_proto::v1::{EmptyResult, ErrorCode, Split};

/// Fewest rows per file a row split accepts.
pub const MIN_ROWS_PER_FILE: u64 = 50_000;
/// Most rows per file a row split accepts.
pub const MAX_ROWS_PER_FILE: u64 = 10_000_000;
/// Smallest size limit a split by size accepts, in megabytes.
pub const MIN_MEGABYTES_PER_FILE: u64 = 1;
/// Largest size limit a split by size accepts, in megabytes.
pub const MAX_MEGABYTES_PER_FILE: u64 = 2000;
/// A megabyte of `split.megabytes_per_file`: decimal, so that a file at the limit is under it
/// in binary megabytes too.
const BYTES_PER_MEGABYTE: u64 = 1_000_000;

/// The most each file of a split holds: rows or bytes, never both; neither without a split.
pub(super) struct FileLimits {
    pub(super) rows_per_file: Option<u64>,
    pub(super) bytes_per_file: Option<u64>,
}

/// Checks the split's rows or megabytes per file.
pub(super) fn validate_file_limits(split: Option<&Split>) -> Result<FileLimits, InvalidRequest> {
    let Some(split) = split else {
        return Ok(FileLimits {
            rows_per_file: None,
            bytes_per_file: None,
        });
    };
    let mut bytes_per_file = None;
    let (rows, megabytes) = (split.rows_per_file, split.megabytes_per_file);
    let invalid = |field: &'static str, message: String| {
        Err(InvalidRequest::new(field, ErrorCode::Unspecified, message))
    };
    match (rows, megabytes) {
        (0, 0) => {
            return invalid(
                "split",
                "a split needs rows_per_file or megabytes_per_file; leave split \
                 unset for one file"
                    .into(),
            );
        }
        (0, megabytes) => {
            if !(MIN_MEGABYTES_PER_FILE..=MAX_MEGABYTES_PER_FILE).contains(&megabytes) {
                return invalid(
                    "split.megabytes_per_file",
                    format!(
                        "megabytes per file must be between \
                         {MIN_MEGABYTES_PER_FILE} and {MAX_MEGABYTES_PER_FILE}; got \
                         {megabytes}"
                    ),
                );
            }
            bytes_per_file = Some(megabytes * BYTES_PER_MEGABYTE);
        }
        (_, 0) => {}
        _ => {
            return invalid(
                "split.megabytes_per_file",
                "set either rows_per_file or megabytes_per_file, not both".into(),
            );
        }
    }
    let rows_per_file = if bytes_per_file.is_some() {
        None
    } else if !(MIN_ROWS_PER_FILE..=MAX_ROWS_PER_FILE).contains(&rows) {
        return Err(InvalidRequest::new(
            "split.rows_per_file",
            ErrorCode::Unspecified,
            format!(
                "rows per file must be between {MIN_ROWS_PER_FILE} and \
                 {MAX_ROWS_PER_FILE}; got {rows}"
            ),
        ));
    } else {
        Some(rows)
    };
    Ok(FileLimits {
        rows_per_file,
        bytes_per_file,
    })
}

/// Checks `empty_result`; returns whether a run without rows skips its files (and delivers
/// only the marker).
pub(super) fn validate_empty_result(empty_result: i32) -> Result<bool, InvalidRequest> {
    match EmptyResult::try_from(empty_result) {
        Ok(EmptyResult::Unspecified | EmptyResult::WriteFile) => Ok(false),
        Ok(EmptyResult::SkipFiles) => Ok(true),
        Err(_) => Err(InvalidRequest::new(
            "empty_result",
            ErrorCode::Unspecified,
            format!(
                "unknown empty result {empty_result}; use EMPTY_RESULT_WRITE_FILE or \
                 EMPTY_RESULT_SKIP_FILES"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};
    use filedrop_proto::v1::{EmptyResult, Split};

    #[test]
    fn splits_are_by_rows_or_by_megabytes() {
        let split = |rows: u64, megabytes: u64| {
            let mut r = request();
            r.split = Some(Split {
                rows_per_file: rows,
                megabytes_per_file: megabytes,
                ..Default::default()
            });
            ExportSpec::validate(r)
        };
        let spec = split(0, 5).unwrap();
        assert_eq!(
            (spec.rows_per_file, spec.bytes_per_file),
            (None, Some(5_000_000))
        );
        let spec = split(50_000, 0).unwrap();
        assert_eq!(
            (spec.rows_per_file, spec.bytes_per_file),
            (Some(50_000), None)
        );
        split(0, 2000).unwrap();
        for (rows, megabytes, field) in [
            (0, 0, "split"),
            (0, 2001, "split.megabytes_per_file"),
            (50_000, 5, "split.megabytes_per_file"),
            (49_999, 0, "split.rows_per_file"),
        ] {
            assert_eq!(split(rows, megabytes).unwrap_err().field, field);
        }
        // A split by size numbers files too.
        let mut r = request();
        r.filename_template = "orders.csv".into();
        r.split = Some(Split {
            megabytes_per_file: 5,
            ..Default::default()
        });
        assert_eq!(field_of(r), "filename_template");
    }

    #[test]
    fn empty_results_write_a_file_unless_skipped() {
        assert!(!ExportSpec::validate(request()).unwrap().skip_empty);
        let mut r = request();
        r.empty_result = EmptyResult::SkipFiles.into();
        assert!(ExportSpec::validate(r.clone()).unwrap().skip_empty);
        r.empty_result = 7;
        assert_eq!(field_of(r), "empty_result");
    }
}
