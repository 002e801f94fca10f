//! The format of the delivered files and the options that go with it: delimited output (CSV,
//! TSV, PSV, a custom delimiter), Parquet (codec and [`Layout`]), JSON and NDJSON, the line
//! ending and the row number column, checked into the `Encoding` the workers receive.

use super::InvalidRequest;
use filedrop_proto::jobs::v1::Encoding;
use filedrop_proto::v1::{
    CsvOptions, ErrorCode, FileFormat, LineEnding, ParquetCompression, ParquetLayout,
    ParquetOptions, QuoteMode, RowNumber,
};

/// The row number column's name when none is given.
pub const DEFAULT_ROW_NUMBER_COLUMN: &str = "row_number";
/// Row number column names are shorter than this, in characters.
const ROW_NUMBER_COLUMN_LIMIT: usize = 1028;

/// Where a run's files go under the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// Each file is named by the templates.
    Files,
    /// Parquet's directory layout: `<rendered template>[.parquet]/part-00000.parquet`, …
    ParquetDirectory {
        /// Append `.parquet` to the directory name (unless it already ends so).
        extension: bool,
    },
}

/// The checked format: the workers' `Encoding` (compression and encryption still unset), the
/// layout of the files, and the warnings the options deserve.
pub(super) struct Format {
    pub(super) format: FileFormat,
    pub(super) encoding: Encoding,
    pub(super) layout: Layout,
    pub(super) warnings: Vec<String>,
}

/// Checks the format and its options, then the line ending, then the row number column.
pub(super) fn validate_format(
    format: i32,
    csv: Option<CsvOptions>,
    parquet: Option<ParquetOptions>,
    line_ending: i32,
    row_number: Option<&RowNumber>,
) -> Result<Format, InvalidRequest> {
    let format = FileFormat::try_from(format).unwrap_or(FileFormat::Unspecified);
    let mut warnings = Vec::new();
    let mut layout = Layout::Files;
    let mut encoding = match format {
        FileFormat::Unspecified => {
            return Err(InvalidRequest::new(
                "format",
                ErrorCode::Unspecified,
                "format is required: FILE_FORMAT_PARQUET, FILE_FORMAT_CSV, FILE_FORMAT_TSV, \
                 FILE_FORMAT_PSV, FILE_FORMAT_DELIMITED, FILE_FORMAT_JSON or \
                 FILE_FORMAT_NDJSON",
            ));
        }
        FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv | FileFormat::Delimited => {
            let csv = csv.unwrap_or(CsvOptions {
                header: true,
                ..Default::default()
            });
            validate_delimiter(format, &csv.delimiter)?;
            warnings.extend(validate_csv_options(format, &csv)?);
            Encoding {
                format: format.into(),
                csv: Some(csv),
                ..Default::default()
            }
        }
        FileFormat::Json | FileFormat::Ndjson => Encoding {
            format: format.into(),
            ..Default::default()
        },
        FileFormat::Parquet => {
            let (parquet_layout, options) = validate_parquet_options(parquet.unwrap_or_default())?;
            layout = parquet_layout;
            Encoding {
                format: format.into(),
                parquet: Some(options),
                ..Default::default()
            }
        }
    };
    encoding.line_ending = validate_line_ending(line_ending)?.into();
    encoding.row_number_column = validate_row_number(row_number)?;
    Ok(Format {
        format,
        encoding,
        layout,
        warnings,
    })
}

/// Checks the Parquet layout, then the codec; returns the layout and the options with the
/// codec's default (Snappy) filled in.
fn validate_parquet_options(
    options: ParquetOptions,
) -> Result<(Layout, ParquetOptions), InvalidRequest> {
    let layout = match ParquetLayout::try_from(options.layout) {
        Ok(ParquetLayout::Unspecified | ParquetLayout::Directory) => {
            Layout::ParquetDirectory { extension: true }
        }
        Ok(ParquetLayout::DirectoryWithoutExtension) => {
            Layout::ParquetDirectory { extension: false }
        }
        Ok(ParquetLayout::SingleFile) => Layout::Files,
        Err(_) => {
            return Err(InvalidRequest::new(
                "parquet.layout",
                ErrorCode::Unspecified,
                format!(
                    "unknown Parquet layout {}; use PARQUET_LAYOUT_DIRECTORY, \
                     PARQUET_LAYOUT_DIRECTORY_WITHOUT_EXTENSION or \
                     PARQUET_LAYOUT_SINGLE_FILE",
                    options.layout
                ),
            ));
        }
    };
    let compression = options.compression;
    let compression = match ParquetCompression::try_from(compression) {
        Ok(ParquetCompression::Unspecified) => ParquetCompression::Snappy,
        Ok(known) => known,
        Err(_) => {
            return Err(InvalidRequest::new(
                "parquet.compression",
                ErrorCode::Unspecified,
                format!(
                    "unknown Parquet compression {compression}; use SNAPPY, ZSTD, \
                     GZIP, LZ4 or NONE"
                ),
            ));
        }
    };
    Ok((
        layout,
        ParquetOptions {
            compression: compression.into(),
            layout: options.layout,
        },
    ))
}

/// Checks the line ending; unset is LF.
fn validate_line_ending(line_ending: i32) -> Result<LineEnding, InvalidRequest> {
    match LineEnding::try_from(line_ending) {
        Ok(LineEnding::Unspecified) => Ok(LineEnding::Lf),
        Ok(known) => Ok(known),
        Err(_) => Err(InvalidRequest::new(
            "line_ending",
            ErrorCode::Unspecified,
            format!("unknown line ending {line_ending}; use LINE_ENDING_LF or LINE_ENDING_CRLF"),
        )),
    }
}

/// Checks `csv.delimiter`: one ASCII character, not `"`, CR or LF, for a custom-delimited
/// format; empty for the formats whose delimiter is fixed.
fn validate_delimiter(format: FileFormat, delimiter: &str) -> Result<(), InvalidRequest> {
    let invalid =
        |message: String| InvalidRequest::new("csv.delimiter", ErrorCode::Unspecified, message);
    if format != FileFormat::Delimited {
        if delimiter.is_empty() {
            return Ok(());
        }
        return Err(invalid(format!(
            "{} has a fixed delimiter; leave csv.delimiter empty, or use FILE_FORMAT_DELIMITED",
            format.as_str_name()
        )));
    }
    let mut chars = delimiter.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii() && !matches!(c, '"' | '\r' | '\n') => Ok(()),
        _ => Err(invalid(format!(
            "the delimiter must be one ASCII character other than '\"', CR and LF, e.g. ';'; \
             got {delimiter:?}"
        ))),
    }
}

/// Checks the quoting options of delimited output; returns the warnings they deserve.
fn validate_csv_options(
    format: FileFormat,
    csv: &CsvOptions,
) -> Result<Vec<String>, InvalidRequest> {
    let delimiter = match format {
        FileFormat::Tsv => '\t',
        FileFormat::Psv => '|',
        FileFormat::Delimited => csv.delimiter.chars().next().unwrap_or(','),
        _ => ',',
    };
    let quote_mode = QuoteMode::try_from(csv.quote_mode).map_err(|_| {
        InvalidRequest::new(
            "csv.quote_mode",
            ErrorCode::Unspecified,
            format!(
                "unknown quote mode {}; use QUOTE_MODE_ALL, QUOTE_MODE_NON_NULL, \
                 QUOTE_MODE_SPECIAL_CHARACTERS, QUOTE_MODE_NON_NUMERIC or QUOTE_MODE_NONE",
                csv.quote_mode
            ),
        )
    })?;
    let mut chars = csv.escape.chars();
    match (chars.next(), chars.next()) {
        (None, _) => {}
        (Some(c), None) if c.is_ascii() && !matches!(c, '\r' | '\n') && c != delimiter => {}
        _ => {
            return Err(InvalidRequest::new(
                "csv.escape",
                ErrorCode::Unspecified,
                format!(
                    "the escape character must be one ASCII character other than the \
                     delimiter, CR and LF, e.g. '\\'; or empty to double quotes; got {:?}",
                    csv.escape
                ),
            ));
        }
    }
    for (field, value) in [
        ("csv.null_value", &csv.null_value),
        ("csv.empty_value", &csv.empty_value),
    ] {
        if let Some(value) = value
            && value.contains([delimiter, '\r', '\n'])
        {
            return Err(InvalidRequest::new(
                field,
                ErrorCode::Unspecified,
                format!(
                    "{value:?} holds the delimiter or a line break, which would shift the \
                     columns of every row holding it; use a literal such as NULL or \"\""
                ),
            ));
        }
    }
    let mut warnings = Vec::new();
    if quote_mode == QuoteMode::None && csv.escape.is_empty() {
        warnings.push(
            "csv.quote_mode is QUOTE_MODE_NONE without csv.escape: values holding the \
             delimiter, quotes or line breaks go out as they are and break their rows; set \
             csv.escape (e.g. '\\') if the data may hold them"
                .to_owned(),
        );
    }
    Ok(warnings)
}

/// Checks the row number option; returns the column name, empty when there is no column.
fn validate_row_number(row_number: Option<&RowNumber>) -> Result<String, InvalidRequest> {
    let Some(row_number) = row_number.filter(|r| r.enabled) else {
        return Ok(String::new());
    };
    let name = match row_number.column_name.as_str() {
        "" => DEFAULT_ROW_NUMBER_COLUMN,
        name => name,
    };
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_chars || name.chars().count() >= ROW_NUMBER_COLUMN_LIMIT {
        return Err(InvalidRequest::new(
            "row_number.column_name",
            ErrorCode::Unspecified,
            format!(
                "the row number column name may hold only letters, digits, '_' and '-', and \
                 must be shorter than {ROW_NUMBER_COLUMN_LIMIT} characters, e.g. \
                 'row_number'; got {name:?}"
            ),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use crate::export::ExportSpec;
    use crate::export::fixtures::{field_of, request};
    use filedrop_proto::v1::{
        CsvOptions, FileFormat, LineEnding, ParquetCompression, ParquetOptions, QuoteMode,
        RowNumber,
    };

    #[test]
    fn delimiters_are_one_ascii_character_and_only_for_custom_delimited_output() {
        let with = |format: FileFormat, delimiter: &str| {
            let mut r = request();
            r.format = format.into();
            r.csv = Some(CsvOptions {
                header: true,
                delimiter: delimiter.into(),
                ..Default::default()
            });
            ExportSpec::validate(r).map(|_| ()).map_err(|e| e.field)
        };
        assert_eq!(with(FileFormat::Delimited, ";"), Ok(()));
        assert_eq!(with(FileFormat::Tsv, ""), Ok(()));
        assert_eq!(with(FileFormat::Psv, ""), Ok(()));
        for bad in ["", ";;", "\"", "\n", "é"] {
            assert_eq!(
                with(FileFormat::Delimited, bad),
                Err("csv.delimiter"),
                "{bad:?}"
            );
        }
        assert_eq!(with(FileFormat::Csv, ";"), Err("csv.delimiter"));
    }

    #[test]
    fn parquet_compression_defaults_to_snappy_and_refuses_unknown_codecs() {
        let mut r = request();
        r.format = FileFormat::Parquet.into();
        r.filename_template = "orders".into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.encoding.parquet.unwrap().compression(),
            ParquetCompression::Snappy
        );
        r.parquet = Some(ParquetOptions {
            compression: ParquetCompression::Zstd.into(),
            ..Default::default()
        });
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(
            spec.encoding.parquet.unwrap().compression(),
            ParquetCompression::Zstd
        );
        r.parquet = Some(ParquetOptions {
            compression: 99,
            ..Default::default()
        });
        assert_eq!(field_of(r.clone()), "parquet.compression");
        r.parquet = Some(ParquetOptions {
            layout: 99,
            ..Default::default()
        });
        assert_eq!(field_of(r), "parquet.layout");
    }

    #[test]
    fn quoting_options_are_checked_and_quote_mode_none_without_escape_warns() {
        let with = |csv: CsvOptions| {
            let mut r = request();
            r.csv = Some(CsvOptions {
                header: true,
                ..csv
            });
            ExportSpec::validate(r)
        };
        let spec = with(CsvOptions {
            quote_mode: QuoteMode::NonNumeric.into(),
            escape: "\\".into(),
            null_value: Some("NULL".into()),
            empty_value: Some("\"\"".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(spec.warnings.is_empty());
        let error = with(CsvOptions {
            quote_mode: 42,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "csv.quote_mode");
        assert!(error.message.contains("QUOTE_MODE_NON_NULL"), "{error}");
        for escape in ["\\\\", ",", "\n", "é"] {
            let error = with(CsvOptions {
                escape: escape.into(),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(error.field, "csv.escape", "{escape:?}");
        }
        let error = with(CsvOptions {
            null_value: Some("a,b".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "csv.null_value");
        let error = with(CsvOptions {
            empty_value: Some("\n".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.field, "csv.empty_value");
        let spec = with(CsvOptions {
            quote_mode: QuoteMode::None.into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(spec.warnings.len(), 1);
        assert!(
            spec.warnings[0].contains("csv.escape"),
            "{:?}",
            spec.warnings
        );
    }

    #[test]
    fn row_number_names_default_and_are_checked() {
        let with = |enabled: bool, name: &str| {
            let mut r = request();
            r.row_number = Some(RowNumber {
                enabled,
                column_name: name.into(),
            });
            ExportSpec::validate(r).map(|spec| spec.encoding.row_number_column)
        };
        assert_eq!(with(false, "ignored"), Ok(String::new()));
        assert_eq!(with(true, ""), Ok("row_number".into()));
        assert_eq!(with(true, "Row-No_2"), Ok("Row-No_2".into()));
        assert!(with(true, &"n".repeat(1027)).is_ok());
        for bad in ["row number", "n\u{e9}", "a.b"] {
            assert_eq!(
                with(true, bad).unwrap_err().field,
                "row_number.column_name",
                "{bad:?}"
            );
        }
        assert_eq!(
            with(true, &"n".repeat(1028)).unwrap_err().field,
            "row_number.column_name"
        );
    }

    #[test]
    fn json_formats_and_line_endings_are_accepted_and_unknown_line_endings_refused() {
        let mut r = request();
        r.format = FileFormat::Ndjson.into();
        r.line_ending = LineEnding::Crlf.into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(spec.encoding.line_ending(), LineEnding::Crlf);
        assert_eq!(spec.encoding.csv, None);
        r.format = FileFormat::Json.into();
        r.line_ending = LineEnding::Unspecified.into();
        let spec = ExportSpec::validate(r.clone()).unwrap();
        assert_eq!(spec.encoding.line_ending(), LineEnding::Lf);
        r.line_ending = 7;
        assert_eq!(field_of(r), "line_ending");
    }
}
