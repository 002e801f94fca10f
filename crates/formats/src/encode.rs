//! Encoding: one segment's batches into one block.
//!
//! - Delimited (CSV, TSV, PSV, custom): the rows, without header (the assembler writes the
//!   header once per file).
//! - Parquet: a complete small Parquet file with one row group per segment; the assembler
//!   appends its column chunks into the delivered file.

use crate::FormatError;
use crate::format::{OutputFormat, ParquetCodec};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Encodes `batches` (all of `schema`) into one block.
pub fn encode_block(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Bytes, FormatError> {
    match format {
        OutputFormat::Delimited { delimiter, .. } => {
            let mut writer = arrow_csv::WriterBuilder::new()
                .with_delimiter(delimiter)
                .with_header(false)
                .build(Vec::new());
            for batch in batches {
                writer.write(batch)?;
            }
            Ok(Bytes::from(writer.into_inner()))
        }
        OutputFormat::Parquet { codec } => {
            let mut writer =
                ArrowWriter::try_new(Vec::new(), schema.clone(), Some(parquet_properties(codec)))?;
            for batch in batches {
                writer.write(batch)?;
            }
            Ok(Bytes::from(writer.into_inner()?))
        }
    }
}

/// The writer properties of every Parquet block, and of empty Parquet files.
pub(crate) fn parquet_properties(codec: ParquetCodec) -> WriterProperties {
    let compression = match codec {
        ParquetCodec::Snappy => Compression::SNAPPY,
        ParquetCodec::Zstd => Compression::ZSTD(ZstdLevel::default()),
        ParquetCodec::Gzip => Compression::GZIP(GzipLevel::default()),
        ParquetCodec::Lz4 => Compression::LZ4_RAW,
        ParquetCodec::None => Compression::UNCOMPRESSED,
    };
    WriterProperties::builder()
        .set_compression(compression)
        // One row group per block: the segment size bounds it.
        .set_max_row_group_row_count(Some(usize::MAX))
        .set_created_by(concat!("filedrop ", env!("CARGO_PKG_VERSION")).to_owned())
        .build()
}
