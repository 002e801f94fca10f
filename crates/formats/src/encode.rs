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
//!
//! In a split by size a block must fit in a file on its own: [`encode_bounded`] encodes a
//! segment that comes out larger as several blocks of consecutive rows.

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

/// A block and the number of rows it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBlock {
    /// The block's bytes, as [`encode_block`] makes them.
    pub bytes: Bytes,
    /// How many of the segment's rows it holds.
    pub rows: u64,
}

/// Encodes `batches` into blocks of at most `max_block_bytes` each (one block when it fits):
/// a segment that encodes larger is cut into slices of consecutive rows, sized from the first
/// attempt, each encoded the same way. A single row that does not fit is
/// [`FormatError::FileTooLarge`].
pub fn encode_bounded(
    output: &Output,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    first_row_number: u64,
    max_block_bytes: Option<u64>,
) -> Result<Vec<EncodedBlock>, FormatError> {
    let bytes = encode_block(output, schema, batches, first_row_number)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let size = bytes.len() as u64;
    let max = match max_block_bytes {
        Some(max) if size > max => max,
        _ => {
            return Ok(vec![EncodedBlock {
                bytes,
                rows: rows as u64,
            }]);
        }
    };
    if rows <= 1 {
        return Err(FormatError::FileTooLarge(format!(
            "row {first_row_number} alone encodes to {size} bytes, more than a file of the size \
             limit holds ({max} bytes of rows): raise split.megabytes_per_file"
        )));
    }
    // A quarter more slices than the sizes say, so that most slices fit at the first try.
    let slices = (size.saturating_mul(5) / 4).div_ceil(max.max(1)).max(2) as usize;
    let slices = slices.min(rows);
    let mut blocks = Vec::with_capacity(slices);
    let mut start = 0;
    for slice in 0..slices {
        let end = rows * (slice + 1) / slices;
        let part = slice_rows(batches, start, end - start);
        blocks.extend(encode_bounded(
            output,
            schema,
            &part,
            first_row_number + start as u64,
            max_block_bytes,
        )?);
        start = end;
    }
    Ok(blocks)
}

/// Rows `start..start + len` of `batches`, as zero-copy slices.
fn slice_rows(batches: &[RecordBatch], start: usize, len: usize) -> Vec<RecordBatch> {
    let mut slices = Vec::new();
    let (mut skip, mut left) = (start, len);
    for batch in batches {
        if left == 0 {
            break;
        }
        if skip >= batch.num_rows() {
            skip -= batch.num_rows();
            continue;
        }
        let take = (batch.num_rows() - skip).min(left);
        slices.push(batch.slice(skip, take));
        left -= take;
        skip = 0;
    }
    slices
}

/// The writer properties of every Parquet block, and of empty Parquet files.
pub fn parquet_properties(codec: ParquetCodec) -> WriterProperties {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delimited::DelimitedOptions;
    use arrow_array::{ArrayRef, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(labels: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "label",
            DataType::Utf8,
            false,
        )]));
        let column: ArrayRef = Arc::new(StringArray::from_iter_values(labels.iter().copied()));
        RecordBatch::try_new(schema, vec![column]).unwrap()
    }

    #[test]
    fn a_segment_too_large_for_a_block_is_cut_into_blocks_of_consecutive_rows() {
        let mut output = Output::plain(OutputFormat::Delimited(DelimitedOptions::with_delimiter(
            b',',
        )));
        output.row_number_column = Some("n".to_owned());
        let labels: Vec<String> = (0..1000).map(|i| format!("row-{i:04}")).collect();
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        // Two batches, so that slices cross a batch boundary.
        let batches = [batch(&labels[..300]), batch(&labels[300..])];
        let schema = batches[0].schema();
        let whole = encode_block(&output, &schema, &batches, 11).unwrap();
        let blocks = encode_bounded(&output, &schema, &batches, 11, Some(1000)).unwrap();
        assert!(blocks.len() > whole.len() / 1000, "{}", blocks.len());
        assert!(blocks.iter().all(|block| block.bytes.len() <= 1000));
        let joined: Vec<u8> = blocks
            .iter()
            .flat_map(|block| block.bytes.to_vec())
            .collect();
        assert_eq!(joined, whole.to_vec(), "the same rows, numbered the same");
        for block in &blocks {
            let lines = block.bytes.iter().filter(|byte| **byte == b'\n').count();
            assert_eq!(block.rows, lines as u64, "each block counts its own rows");
        }

        let one = encode_bounded(&output, &schema, &batches, 11, Some(whole.len() as u64));
        assert_eq!(
            one.unwrap(),
            vec![EncodedBlock {
                bytes: whole,
                rows: 1000
            }]
        );
        let error = encode_bounded(&output, &schema, &batches, 11, Some(5)).unwrap_err();
        assert!(
            matches!(&error, FormatError::FileTooLarge(message) if message.contains("row 11 alone")),
            "{error}"
        );
    }
}
