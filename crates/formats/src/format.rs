//! The output format of a run, and which Arrow types it can carry.

use arrow_schema::{DataType, Schema};
use filedrop_proto::jobs::v1::Encoding;
use filedrop_proto::v1::{FileFormat, ParquetCompression};

/// The output format, as encoders and assemblers need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Delimited text quoted as RFC 4180 says (CSV, TSV, PSV or a custom delimiter),
    /// optionally with a header row.
    Delimited {
        /// The delimiter byte (`,`, tab, `|`, or the custom one).
        delimiter: u8,
        /// Write the header row.
        header: bool,
    },
    /// Parquet.
    Parquet {
        /// The codec of column chunks.
        codec: ParquetCodec,
    },
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

/// A column whose type the format cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "column {column:?} has type {data_type}, which {format} output cannot carry; cast it in the \
     query or choose Parquet"
)]
pub struct UnsupportedType {
    /// The column name.
    pub column: String,
    /// The column's Arrow type, displayed.
    pub data_type: String,
    /// The format's name.
    pub format: &'static str,
}

impl OutputFormat {
    /// The format a task's `Encoding` describes (validated by the control plane; an
    /// unspecified Parquet codec is snappy).
    pub fn from_encoding(encoding: &Encoding) -> Result<Self, String> {
        match FileFormat::try_from(encoding.format) {
            Ok(
                format @ (FileFormat::Csv
                | FileFormat::Tsv
                | FileFormat::Psv
                | FileFormat::Delimited),
            ) => {
                let header = encoding.csv.as_ref().is_none_or(|csv| csv.header);
                let delimiter = match format {
                    FileFormat::Csv => b',',
                    FileFormat::Tsv => b'\t',
                    FileFormat::Psv => b'|',
                    _ => match encoding.csv.as_ref().map(|csv| csv.delimiter.as_bytes()) {
                        Some([delimiter]) => *delimiter,
                        _ => return Err("a custom-delimited format without its delimiter".into()),
                    },
                };
                Ok(Self::Delimited { delimiter, header })
            }
            Ok(FileFormat::Parquet) => {
                let compression = encoding.parquet.map(|p| p.compression).unwrap_or_default();
                let codec = match ParquetCompression::try_from(compression) {
                    Ok(ParquetCompression::Unspecified | ParquetCompression::Snappy) => {
                        ParquetCodec::Snappy
                    }
                    Ok(ParquetCompression::Zstd) => ParquetCodec::Zstd,
                    Ok(ParquetCompression::Gzip) => ParquetCodec::Gzip,
                    Ok(ParquetCompression::Lz4) => ParquetCodec::Lz4,
                    Ok(ParquetCompression::None) => ParquetCodec::None,
                    Err(_) => return Err(format!("unknown Parquet compression {compression}")),
                };
                Ok(Self::Parquet { codec })
            }
            _ => Err(format!("unknown file format {}", encoding.format)),
        }
    }

    /// The format's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Delimited {
                delimiter: b',', ..
            } => "CSV",
            Self::Delimited {
                delimiter: b'\t', ..
            } => "TSV",
            Self::Delimited {
                delimiter: b'|', ..
            } => "PSV",
            Self::Delimited { .. } => "delimited",
            Self::Parquet { .. } => "Parquet",
        }
    }

    /// The HTTP content type of delivered files.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Delimited {
                delimiter: b',', ..
            } => "text/csv",
            Self::Delimited {
                delimiter: b'\t', ..
            } => "text/tab-separated-values",
            Self::Delimited { .. } => "text/plain",
            Self::Parquet { .. } => "application/vnd.apache.parquet",
        }
    }

    /// Checks that every column of `schema` can be written, before any row is read.
    pub fn check_schema(self, schema: &Schema) -> Result<(), UnsupportedType> {
        for field in schema.fields() {
            if !self.carries(field.data_type()) {
                return Err(UnsupportedType {
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                    format: self.name(),
                });
            }
        }
        Ok(())
    }

    fn carries(self, data_type: &DataType) -> bool {
        match self {
            // Delimited text has no nesting: one value per field.
            Self::Delimited { .. } => match data_type {
                DataType::Dictionary(_, value) => self.carries(value),
                other => !other.is_nested() && !matches!(other, DataType::RunEndEncoded(..)),
            },
            Self::Parquet { .. } => !matches!(data_type, DataType::Union(..)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{Field, Fields};
    use std::sync::Arc;

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
        let error = OutputFormat::Delimited {
            delimiter: b',',
            header: true,
        }
        .check_schema(&schema)
        .unwrap_err();
        assert_eq!(error.column, "tags");
        assert!(error.to_string().contains("CSV output cannot carry"));
        let parquet = OutputFormat::Parquet {
            codec: ParquetCodec::Snappy,
        };
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
        let error = OutputFormat::Delimited {
            delimiter: b'\t',
            header: false,
        }
        .check_schema(&schema)
        .unwrap_err();
        assert_eq!(error.column, "st");
    }
}
