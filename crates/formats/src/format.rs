//! The output of a run — its format and the options around it — and which Arrow types each
//! format can carry.

use crate::archive::Archive;
use crate::compress::StreamCompression;
use crate::delimited::{DelimitedOptions, LineEnding, QuoteMode};
use crate::pgp::PgpRecipient;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, new_null_array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use filedrop_proto::jobs::v1::Encoding;
use filedrop_proto::v1 as api;
use std::sync::Arc;

/// The file format, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputFormat {
    /// Delimited text (CSV, TSV, PSV or a custom delimiter).
    Delimited(DelimitedOptions),
    /// JSON: one array per file, or one object per line.
    Json {
        /// Array or lines.
        layout: JsonLayout,
        /// The end of every line.
        line_ending: LineEnding,
    },
    /// Parquet.
    Parquet {
        /// The codec of column chunks.
        codec: ParquetCodec,
    },
}

/// How JSON rows are laid out in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonLayout {
    /// `[` one object per line, separated by commas `]`.
    Array,
    /// One object per line (NDJSON).
    Lines,
}

/// The codec of Parquet column chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCodec {
    /// Snappy, the default.
    Snappy,
    /// Zstandard, default level.
    Zstd,
    /// Gzip, default level.
    Gzip,
    /// LZ4 (Parquet's `LZ4_RAW`; the older `LZ4` codec is deprecated).
    Lz4,
    /// Uncompressed.
    None,
}

/// Everything encoders and assemblers need to know about a run's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The file format.
    pub format: OutputFormat,
    /// The row number column put first, if any.
    pub row_number_column: Option<String>,
    /// The compression of the file, if any (text formats only).
    pub compression: Option<StreamCompression>,
    /// The archive holding the file, if any (text formats only; never with `compression`).
    pub archive: Option<Archive>,
    /// The key the file is encrypted to, if any (every format; last).
    pub encryption: Option<PgpRecipient>,
}

/// A schema the output cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaProblem {
    /// A column whose type the format cannot carry.
    #[error(
        "column {column:?} has type {data_type}, which {format} output cannot carry; cast it in \
         the query or choose Parquet"
    )]
    UnsupportedType {
        /// The column name.
        column: String,
        /// The column's Arrow type, displayed.
        data_type: String,
        /// The format's name.
        format: &'static str,
    },
    /// The row number column has the name of a data column.
    #[error(
        "row_number.column_name: the data already has a column named {0:?}; choose another name \
         for the row number column"
    )]
    RowNumberClash(String),
}

impl Output {
    /// The format alone: no row numbers, compression, archive or encryption.
    pub fn plain(format: OutputFormat) -> Self {
        Self {
            format,
            row_number_column: None,
            compression: None,
            archive: None,
            encryption: None,
        }
    }

    /// The output a task's `Encoding` describes (validated by the control plane).
    pub fn from_encoding(encoding: &Encoding) -> Result<Self, String> {
        let line_ending = match api::LineEnding::try_from(encoding.line_ending) {
            Ok(api::LineEnding::Unspecified | api::LineEnding::Lf) => LineEnding::Lf,
            Ok(api::LineEnding::Crlf) => LineEnding::CrLf,
            Err(_) => return Err(format!("unknown line ending {}", encoding.line_ending)),
        };
        let format = match api::FileFormat::try_from(encoding.format) {
            Ok(
                format @ (api::FileFormat::Csv
                | api::FileFormat::Tsv
                | api::FileFormat::Psv
                | api::FileFormat::Delimited),
            ) => {
                let csv = encoding.csv.clone().unwrap_or(api::CsvOptions {
                    header: true,
                    ..Default::default()
                });
                let delimiter = match format {
                    api::FileFormat::Csv => b',',
                    api::FileFormat::Tsv => b'\t',
                    api::FileFormat::Psv => b'|',
                    _ => match csv.delimiter.as_bytes() {
                        [delimiter] => *delimiter,
                        _ => return Err("a custom-delimited format without its delimiter".into()),
                    },
                };
                let quote_mode = match api::QuoteMode::try_from(csv.quote_mode) {
                    Ok(api::QuoteMode::Unspecified | api::QuoteMode::SpecialCharacters) => {
                        QuoteMode::SpecialCharacters
                    }
                    Ok(api::QuoteMode::All) => QuoteMode::All,
                    Ok(api::QuoteMode::NonNull) => QuoteMode::NonNull,
                    Ok(api::QuoteMode::NonNumeric) => QuoteMode::NonNumeric,
                    Ok(api::QuoteMode::None) => QuoteMode::None,
                    Err(_) => return Err(format!("unknown quote mode {}", csv.quote_mode)),
                };
                let escape = match csv.escape.as_bytes() {
                    [] => None,
                    [escape] => Some(*escape),
                    _ => return Err(format!("escape {:?} is not one character", csv.escape)),
                };
                OutputFormat::Delimited(DelimitedOptions {
                    delimiter,
                    header: csv.header,
                    quote_mode,
                    escape,
                    null_value: csv.null_value,
                    empty_value: csv.empty_value,
                    line_ending,
                })
            }
            Ok(api::FileFormat::Json) => OutputFormat::Json {
                layout: JsonLayout::Array,
                line_ending,
            },
            Ok(api::FileFormat::Ndjson) => OutputFormat::Json {
                layout: JsonLayout::Lines,
                line_ending,
            },
            Ok(api::FileFormat::Parquet) => {
                let compression = encoding.parquet.map(|p| p.compression).unwrap_or_default();
                let codec = match api::ParquetCompression::try_from(compression) {
                    Ok(api::ParquetCompression::Unspecified | api::ParquetCompression::Snappy) => {
                        ParquetCodec::Snappy
                    }
                    Ok(api::ParquetCompression::Zstd) => ParquetCodec::Zstd,
                    Ok(api::ParquetCompression::Gzip) => ParquetCodec::Gzip,
                    Ok(api::ParquetCompression::Lz4) => ParquetCodec::Lz4,
                    Ok(api::ParquetCompression::None) => ParquetCodec::None,
                    Err(_) => return Err(format!("unknown Parquet compression {compression}")),
                };
                OutputFormat::Parquet { codec }
            }
            _ => return Err(format!("unknown file format {}", encoding.format)),
        };
        let (compression, archive) = match api::Compression::try_from(encoding.compression) {
            Ok(api::Compression::Unspecified | api::Compression::None) => (None, None),
            Ok(api::Compression::Gzip) => (Some(StreamCompression::Gzip), None),
            Ok(api::Compression::Zstd) => (Some(StreamCompression::Zstd), None),
            Ok(api::Compression::Bzip2) => (Some(StreamCompression::Bzip2), None),
            Ok(api::Compression::Zip) => (
                None,
                Some(Archive::Zip {
                    zip64: encoding.zip64,
                }),
            ),
            Ok(api::Compression::Tar) => (None, Some(Archive::Tar)),
            Ok(api::Compression::Tgz) => (None, Some(Archive::Tgz)),
            Err(_) => return Err(format!("unknown compression {}", encoding.compression)),
        };
        if (compression.is_some() || archive.is_some())
            && matches!(format, OutputFormat::Parquet { .. })
        {
            return Err("a compressed or archived Parquet file".into());
        }
        Ok(Self {
            format,
            row_number_column: Some(encoding.row_number_column.clone())
                .filter(|name| !name.is_empty()),
            compression,
            archive,
            encryption: match encoding.pgp_public_key.as_str() {
                "" => None,
                armored => Some(PgpRecipient::from_armored(armored)?),
            },
        })
    }

    /// The format's name, for messages.
    pub fn name(&self) -> &'static str {
        self.format.name()
    }

    /// The HTTP content type of delivered files.
    pub fn content_type(&self) -> &'static str {
        if self.encryption.is_some() {
            return "application/pgp-encrypted";
        }
        if let Some(archive) = self.archive {
            return archive.content_type();
        }
        if let Some(compression) = self.compression {
            return compression.content_type();
        }
        match &self.format {
            OutputFormat::Delimited(options) if options.delimiter == b',' => "text/csv",
            OutputFormat::Delimited(options) if options.delimiter == b'\t' => {
                "text/tab-separated-values"
            }
            OutputFormat::Delimited(_) => "text/plain",
            OutputFormat::Json {
                layout: JsonLayout::Array,
                ..
            } => "application/json",
            OutputFormat::Json {
                layout: JsonLayout::Lines,
                ..
            } => "application/x-ndjson",
            OutputFormat::Parquet { .. } => "application/vnd.apache.parquet",
        }
    }

    /// The schema of the delivered files: the run's schema, after the row number column if
    /// there is one.
    pub fn file_schema(&self, schema: &SchemaRef) -> SchemaRef {
        match &self.row_number_column {
            None => schema.clone(),
            Some(name) => {
                let mut fields = vec![Arc::new(Field::new(name, DataType::Int64, false))];
                fields.extend(schema.fields().iter().cloned());
                Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
            }
        }
    }

    /// `batches` as the files carry them: with the row number column first, numbered from
    /// `first_row_number`.
    pub fn file_batches(
        &self,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        first_row_number: u64,
    ) -> Result<Vec<RecordBatch>, ArrowError> {
        if self.row_number_column.is_none() {
            return Ok(batches.to_vec());
        }
        let file_schema = self.file_schema(schema);
        let mut next = first_row_number as i64;
        batches
            .iter()
            .map(|batch| {
                let rows = batch.num_rows() as i64;
                let mut columns: Vec<ArrayRef> =
                    vec![Arc::new(Int64Array::from_iter_values(next..next + rows))];
                columns.extend(batch.columns().iter().cloned());
                next += rows;
                RecordBatch::try_new(file_schema.clone(), columns)
            })
            .collect()
    }

    /// Checks, before any row is read, that every column of `schema` can be written: each
    /// column is written once, as a null, by the real encoder of the format.
    pub fn check_schema(&self, schema: &Schema) -> Result<(), SchemaProblem> {
        if let Some(name) = &self.row_number_column
            && schema.field_with_name(name).is_ok()
        {
            return Err(SchemaProblem::RowNumberClash(name.clone()));
        }
        for field in schema.fields() {
            if !self.format.carries(field.data_type()) {
                return Err(SchemaProblem::UnsupportedType {
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                    format: self.name(),
                });
            }
        }
        Ok(())
    }
}

impl OutputFormat {
    /// The format's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delimited(options) => match options.delimiter {
                b',' => "CSV",
                b'\t' => "TSV",
                b'|' => "PSV",
                _ => "delimited",
            },
            Self::Json {
                layout: JsonLayout::Array,
                ..
            } => "JSON",
            Self::Json {
                layout: JsonLayout::Lines,
                ..
            } => "NDJSON",
            Self::Parquet { .. } => "Parquet",
        }
    }

    fn carries(&self, data_type: &DataType) -> bool {
        match self {
            // Delimited text has no nesting: one value per field.
            Self::Delimited(_) if !flat(data_type) => return false,
            // The Parquet writer panics on unions rather than returning an error.
            Self::Parquet { .. } if holds_union(data_type) => return false,
            _ => {}
        }
        let probe = Arc::new(Schema::new(vec![Field::new(
            "probe",
            data_type.clone(),
            true,
        )]));
        let Ok(batch) = RecordBatch::try_new(probe.clone(), vec![new_null_array(data_type, 1)])
        else {
            return false;
        };
        let output = Output::plain(self.clone());
        // A writer that panics on a type it cannot write refuses the type like one that errors.
        let probe_write = std::panic::AssertUnwindSafe(|| {
            crate::encode::encode_block(&output, &probe, &[batch], 1)
        });
        std::panic::catch_unwind(probe_write).is_ok_and(|encoded| encoded.is_ok())
    }
}

fn holds_union(data_type: &DataType) -> bool {
    match data_type {
        DataType::Union(..) => true,
        DataType::List(field)
        | DataType::LargeList(field)
        | DataType::ListView(field)
        | DataType::LargeListView(field)
        | DataType::FixedSizeList(field, _)
        | DataType::Map(field, _) => holds_union(field.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| holds_union(f.data_type())),
        DataType::Dictionary(_, value) => holds_union(value),
        DataType::RunEndEncoded(_, values) => holds_union(values.data_type()),
        _ => false,
    }
}

fn flat(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, value) => flat(value),
        other => !other.is_nested() && !matches!(other, DataType::RunEndEncoded(..)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Fields, IntervalUnit, UnionFields, UnionMode};

    fn csv() -> Output {
        Output::plain(OutputFormat::Delimited(DelimitedOptions::with_delimiter(
            b',',
        )))
    }

    fn unsupported_column(output: &Output, schema: &Schema) -> Option<String> {
        match output.check_schema(schema) {
            Ok(()) => None,
            Err(SchemaProblem::UnsupportedType { column, .. }) => Some(column),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn csv_refuses_nested_columns_by_name() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let error = csv().check_schema(&schema).unwrap_err();
        assert!(error.to_string().contains("\"tags\""), "{error}");
        assert!(error.to_string().contains("CSV output cannot carry"));
        let parquet = Output::plain(OutputFormat::Parquet {
            codec: ParquetCodec::Snappy,
        });
        assert_eq!(parquet.check_schema(&schema), Ok(()));
    }

    #[test]
    fn csv_accepts_flat_and_dictionary_columns() {
        let schema = Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "d",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("st", DataType::Struct(Fields::empty()), true),
        ]);
        assert_eq!(unsupported_column(&csv(), &schema), Some("st".into()));
    }

    #[test]
    fn json_carries_nested_columns_and_every_format_refuses_unions() {
        let nested = Schema::new(vec![
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            Field::new(
                "point",
                DataType::Struct(Fields::from(vec![Field::new("x", DataType::Float64, true)])),
                true,
            ),
        ]);
        let union = Schema::new(vec![Field::new(
            "u",
            DataType::Union(
                UnionFields::try_new(vec![0], vec![Field::new("i", DataType::Int32, true)])
                    .unwrap(),
                UnionMode::Sparse,
            ),
            true,
        )]);
        for layout in [JsonLayout::Array, JsonLayout::Lines] {
            let json = Output::plain(OutputFormat::Json {
                layout,
                line_ending: LineEnding::Lf,
            });
            assert_eq!(unsupported_column(&json, &nested), None);
            assert_eq!(unsupported_column(&json, &union), Some("u".into()));
        }
        let parquet = Output::plain(OutputFormat::Parquet {
            codec: ParquetCodec::Snappy,
        });
        assert_eq!(unsupported_column(&parquet, &union), Some("u".into()));
        assert_eq!(unsupported_column(&csv(), &union), Some("u".into()));
        let interval = Schema::new(vec![Field::new(
            "span",
            DataType::Interval(IntervalUnit::MonthDayNano),
            true,
        )]);
        assert_eq!(unsupported_column(&parquet, &interval), Some("span".into()));
    }

    #[test]
    fn a_row_number_column_named_as_a_data_column_is_refused() {
        let schema = Schema::new(vec![Field::new("row_number", DataType::Int64, false)]);
        let numbered = Output {
            row_number_column: Some("row_number".into()),
            ..csv()
        };
        assert_eq!(
            numbered.check_schema(&schema),
            Err(SchemaProblem::RowNumberClash("row_number".into()))
        );
    }
}
