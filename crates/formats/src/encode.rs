//! Encoding: one segment's batches into one block.
//!
//! - Delimited (CSV, TSV, PSV, custom): the rows, without header (the assembler writes the
//!   header once per file).
//! - JSON array: the row objects separated by `,` and a line ending, without brackets (the
//!   assembler writes them, and the commas between blocks).
//! - NDJSON: one object per line.
//! - Parquet: a complete small Parquet file with one row group per segment; the assembler
//!   appends its column chunks into the delivered file.
//!
//! A compressed file's blocks are compressed here, each as a complete gzip member, zstd frame or
//! bzip2 stream.
//!
//! Row numbers, when asked for, are added here from the segment's place in the run, so the
//! numbering runs across the whole run without coordination between encoders.

use crate::FormatError;
use crate::delimited::LineEnding;
use crate::format::{JsonLayout, Output, OutputFormat, ParquetCodec};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Encodes `batches` (all of the run's `schema`) into one block; `first_row_number` is the
/// number of the first row (from 1).
pub fn encode_block(
    output: &Output,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    first_row_number: u64,
) -> Result<Bytes, FormatError> {
    let block = encode_plain(output, schema, batches, first_row_number)?;
    match output.compression {
        // An empty block stays empty, so the assembler can tell a block without rows.
        Some(compression) if !block.is_empty() => Ok(Bytes::from(compression.compress(&block)?)),
        _ => Ok(block),
    }
}

fn encode_plain(
    output: &Output,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    first_row_number: u64,
) -> Result<Bytes, FormatError> {
    let file_schema = output.file_schema(schema);
    let batches = output.file_batches(schema, batches, first_row_number)?;
    match &output.format {
        OutputFormat::Delimited(options) => {
            let mut block = Vec::new();
            for batch in &batches {
                options.write_batch(batch, &mut block)?;
            }
            Ok(Bytes::from(block))
        }
        OutputFormat::Json {
            layout,
            line_ending,
        } => Ok(Bytes::from(encode_json(*layout, *line_ending, &batches)?)),
        OutputFormat::Parquet { codec } => {
            let mut writer =
                ArrowWriter::try_new(Vec::new(), file_schema, Some(parquet_properties(*codec)))?;
            for batch in &batches {
                writer.write(batch)?;
            }
            Ok(Bytes::from(writer.into_inner()?))
        }
    }
}

/// Rows as `arrow-json` writes them, one object per line, with nulls kept as `null` (so a
/// column that is null in a whole file still reads back). JSON escapes every line break inside
/// a value, so the only `\n` bytes are row ends, which makes the line ending and the array's
/// commas a plain substitution.
fn encode_json(
    layout: JsonLayout,
    line_ending: LineEnding,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, FormatError> {
    let mut writer = arrow_json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow_json::writer::LineDelimited>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let lines = writer.into_inner();
    let separator: &[u8] = match (layout, line_ending) {
        (JsonLayout::Lines, LineEnding::Lf) => return Ok(lines),
        (JsonLayout::Lines, LineEnding::CrLf) => b"\r\n",
        (JsonLayout::Array, LineEnding::Lf) => b",\n",
        (JsonLayout::Array, LineEnding::CrLf) => b",\r\n",
    };
    let body = match layout {
        JsonLayout::Lines => &lines[..],
        // The last row of an array block is not followed by a comma.
        JsonLayout::Array => lines.strip_suffix(b"\n").unwrap_or(&lines),
    };
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    for (index, line) in body.split(|byte| *byte == b'\n').enumerate() {
        if index > 0 {
            out.extend_from_slice(separator);
        }
        out.extend_from_slice(line);
    }
    Ok(out)
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
