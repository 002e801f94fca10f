//! Assembly: a file's blocks, in order, into the delivered bytes.
//!
//! The assembler is synchronous and writes to any [`Write`]: the uploader gives it a writer
//! that cuts the output into multipart-upload parts, so a file is never held whole in memory.
//! Blocks are fetched one at a time through a callback.
//!
//! A text file is laid out first as a list of [`Piece`]s — framing the assembler writes (a
//! header row, JSON brackets and commas) and staged blocks — from the blocks' sizes alone, so
//! its exact size is known before the first byte: an archive needs it up front.

use crate::FormatError;
use crate::archive::copy_buffered;
use crate::encode::parquet_properties;
use crate::format::{JsonLayout, Output, OutputFormat, ParquetCodec};
use arrow_schema::SchemaRef;
use bytes::{Buf, Bytes};
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::writer::SerializedFileWriter;
use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;

/// Writes the file made of the blocks whose sizes are `block_sizes` to `out`; `fetch(i)`
/// returns block `i`, which must be exactly `block_sizes[i]` bytes. `object_key` is the
/// delivered object's key: an archive names its entry after it (without `.pgp`). With no
/// blocks, writes the empty file of the format (header only, schema only, `[]`, or nothing for
/// NDJSON and header-less delimited files — compressed, an empty member). Encrypted last when
/// the output says so.
pub fn assemble<W, F>(
    output: &Output,
    schema: &SchemaRef,
    object_key: &str,
    block_sizes: &[u64],
    fetch: F,
    mut out: W,
) -> Result<W, FormatError>
where
    W: Write + Send,
    F: FnMut(usize) -> Result<Bytes, FormatError> + Send,
{
    let Some(recipient) = &output.encryption else {
        return assemble_plain(output, schema, object_key, block_sizes, fetch, out);
    };
    let plain_key = object_key.strip_suffix(".pgp").unwrap_or(object_key);
    let file_name = plain_key.rsplit('/').next().unwrap_or(plain_key);
    recipient.encrypt(file_name, &mut out, |pipe| {
        assemble_plain(output, schema, plain_key, block_sizes, fetch, pipe).map(drop)
    })?;
    out.flush()?;
    Ok(out)
}

/// [`assemble`] without encryption.
fn assemble_plain<W, F>(
    output: &Output,
    schema: &SchemaRef,
    object_key: &str,
    block_sizes: &[u64],
    fetch: F,
    out: W,
) -> Result<W, FormatError>
where
    W: Write + Send,
    F: FnMut(usize) -> Result<Bytes, FormatError>,
{
    let schema = output.file_schema(schema);
    if let OutputFormat::Parquet { codec } = &output.format {
        if output.archive.is_some() || output.compression.is_some() {
            return Err(FormatError::Inconsistent(
                "Parquet files are neither compressed as a whole nor archived".into(),
            ));
        }
        if block_sizes.is_empty() {
            let writer = ArrowWriter::try_new(out, schema, Some(parquet_properties(*codec)))?;
            return Ok(writer.into_inner()?);
        }
        return assemble_parquet(*codec, block_sizes.len(), fetch, out);
    }
    let pieces = text_pieces(output, &schema, block_sizes)?;
    let size = pieces
        .iter()
        .map(|piece| match piece {
            Piece::Framing(bytes) => bytes.len() as u64,
            Piece::Block(index) => block_sizes[*index],
        })
        .sum();
    let mut reader = PieceReader {
        pieces: pieces.into_iter(),
        block_sizes,
        fetch,
        current: Bytes::new(),
        failure: None,
    };
    let written = match output.archive {
        None => {
            let mut out = out;
            copy_buffered(&mut reader, &mut out)
                .map(|_| out)
                .map_err(FormatError::from)
        }
        Some(archive) => archive.write(&archive.entry_name(object_key), size, &mut reader, out),
    };
    // A block that could not be fetched surfaces as an I/O error of the copy; report the
    // fetch's own error, which says why.
    if let Some(failure) = reader.failure.take() {
        return Err(failure);
    }
    let mut out = written?;
    out.flush()?;
    Ok(out)
}

/// The bytes of a text file that are not blocks (header row, JSON brackets and commas, each
/// compressed when the file is), for blocks of `block_sizes`.
pub(crate) fn framing_size(
    output: &Output,
    schema: &SchemaRef,
    block_sizes: &[u64],
) -> Result<u64, FormatError> {
    let schema = output.file_schema(schema);
    Ok(text_pieces(output, &schema, block_sizes)?
        .iter()
        .map(|piece| match piece {
            Piece::Framing(bytes) => bytes.len() as u64,
            Piece::Block(_) => 0,
        })
        .sum())
}

/// A part of a text file, in order.
#[derive(Debug)]
enum Piece {
    /// Bytes the assembler adds (compressed as a member of their own when the file is).
    Framing(Vec<u8>),
    /// A staged block, by index.
    Block(usize),
}

/// The pieces of a text file. Empty blocks are left out.
fn text_pieces(
    output: &Output,
    schema: &SchemaRef,
    block_sizes: &[u64],
) -> Result<Vec<Piece>, FormatError> {
    let framing = |bytes: Vec<u8>| -> io::Result<Piece> {
        Ok(Piece::Framing(match output.compression {
            Some(compression) => compression.compress(&bytes)?,
            None => bytes,
        }))
    };
    let blocks = || {
        (0..block_sizes.len())
            .filter(|index| block_sizes[*index] > 0)
            .map(Piece::Block)
    };
    let mut pieces = Vec::new();
    match &output.format {
        OutputFormat::Delimited(options) => {
            if options.header {
                let mut header = Vec::new();
                options.write_header(schema, &mut header);
                pieces.push(framing(header)?);
            }
            pieces.extend(blocks());
        }
        OutputFormat::Json {
            layout: JsonLayout::Lines,
            ..
        } => pieces.extend(blocks()),
        OutputFormat::Json {
            layout: JsonLayout::Array,
            line_ending,
        } => {
            let line_ending = line_ending.bytes();
            let mut opening = b"[".to_vec();
            let mut any_row = false;
            for block in blocks() {
                // `[` before the first row, a comma between blocks; each row on its own line.
                let mut separator = if any_row {
                    b",".to_vec()
                } else {
                    std::mem::take(&mut opening)
                };
                separator.extend_from_slice(line_ending);
                pieces.push(framing(separator)?);
                pieces.push(block);
                any_row = true;
            }
            let mut closing = opening;
            if any_row {
                closing.extend_from_slice(line_ending);
            }
            closing.push(b']');
            closing.extend_from_slice(line_ending);
            pieces.push(framing(closing)?);
        }
        OutputFormat::Parquet { .. } => {
            return Err(FormatError::Inconsistent(
                "a Parquet file is not a text file".into(),
            ));
        }
    }
    // A compressed file with nothing in it is still one valid (empty) member, so that
    // `gzip -t` and friends accept it.
    if pieces.is_empty()
        && let Some(compression) = output.compression
    {
        pieces.push(Piece::Framing(compression.compress(b"")?));
    }
    Ok(pieces)
}

/// Reads a text file's pieces in order, fetching each block when it is reached. A fetch
/// failure is kept in `failure` (the `Read` error only says that one happened).
struct PieceReader<'a, F> {
    pieces: std::vec::IntoIter<Piece>,
    block_sizes: &'a [u64],
    fetch: F,
    current: Bytes,
    failure: Option<FormatError>,
}

impl<F> PieceReader<'_, F>
where
    F: FnMut(usize) -> Result<Bytes, FormatError>,
{
    fn next_block(&mut self, index: usize) -> io::Result<Bytes> {
        let fetched = (self.fetch)(index).and_then(|block| {
            // The size was promised up front (a tar header holds it): hold the block to it.
            if block.len() as u64 == self.block_sizes[index] {
                Ok(block)
            } else {
                Err(FormatError::Inconsistent(format!(
                    "block {index} is {} bytes, {} were expected",
                    block.len(),
                    self.block_sizes[index]
                )))
            }
        });
        fetched.map_err(|failure| {
            self.failure = Some(failure);
            io::Error::other(format!("block {index} could not be read"))
        })
    }
}

impl<F> BufRead for PieceReader<'_, F>
where
    F: FnMut(usize) -> Result<Bytes, FormatError>,
{
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.current.is_empty() {
            self.current = match self.pieces.next() {
                None => break,
                Some(Piece::Framing(bytes)) => Bytes::from(bytes),
                Some(Piece::Block(index)) => self.next_block(index)?,
            };
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current.advance(amount);
    }
}

impl<F> Read for PieceReader<'_, F>
where
    F: FnMut(usize) -> Result<Bytes, FormatError>,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let length = available.len().min(buf.len());
        buf[..length].copy_from_slice(&available[..length]);
        self.consume(length);
        Ok(length)
    }
}

/// Appends the row groups of every block under one footer, copying column chunks as they are
/// (no decoding), as `parquet-concat` does.
fn assemble_parquet<W, F>(
    codec: ParquetCodec,
    block_count: usize,
    mut fetch: F,
    out: W,
) -> Result<W, FormatError>
where
    W: Write + Send,
    F: FnMut(usize) -> Result<Bytes, FormatError>,
{
    let mut writer: Option<SerializedFileWriter<W>> = None;
    let mut out = Some(out);
    for index in 0..block_count {
        let block = fetch(index)?;
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&block)?;
        let file_metadata = metadata.file_metadata();
        let writer = match &mut writer {
            Some(writer) => {
                if writer.schema_descr().root_schema() != file_metadata.schema() {
                    return Err(FormatError::Inconsistent(format!(
                        "block {index} has a different Parquet schema from block 0"
                    )));
                }
                writer
            }
            None => {
                let mut new_writer = SerializedFileWriter::new(
                    out.take().expect("the output is taken once"),
                    file_metadata.schema_descr().root_schema_ptr(),
                    Arc::new(parquet_properties(codec)),
                )?;
                // The Arrow schema (`ARROW:schema`) travels in the key-value metadata; keep it
                // so readers get back the exact Arrow types (time zones, large types).
                for kv in file_metadata.key_value_metadata().into_iter().flatten() {
                    new_writer.append_key_value_metadata(kv.clone());
                }
                writer.insert(new_writer)
            }
        };
        let page_index = metadata.page_index();
        for (rg_index, row_group) in metadata.row_groups().iter().enumerate() {
            let mut rg_writer = writer.next_row_group()?;
            for (column_index, column) in row_group.columns().iter().enumerate() {
                let result = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: row_group.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: page_index
                        .and_then(|pi| pi.column_index(rg_index, column_index))
                        .cloned(),
                    offset_index: page_index
                        .and_then(|pi| pi.offset_index(rg_index, column_index))
                        .cloned(),
                };
                rg_writer.append_column(&block, result)?;
            }
            rg_writer.close()?;
        }
    }
    let writer = writer.expect("block_count > 0");
    Ok(writer.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::Archive;
    use crate::compress::StreamCompression;
    use crate::delimited::{DelimitedOptions, LineEnding};
    use crate::encode::encode_block;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
                true,
            ),
        ]))
    }

    fn batch(start: i64, rows: i64) -> RecordBatch {
        let ids: Vec<i64> = (start..start + rows).collect();
        let names: Vec<Option<String>> = ids
            .iter()
            .map(|i| (i % 3 != 0).then(|| format!("n,\"{i}\"\nü")))
            .collect();
        let at: Vec<Option<i64>> = ids
            .iter()
            .map(|i| (i % 5 != 0).then_some(i * 1000))
            .collect();
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(ids)) as ArrayRef,
                Arc::new(StringArray::from(names)),
                Arc::new(TimestampMillisecondArray::from(at).with_timezone("+02:00")),
            ],
        )
        .unwrap()
    }

    fn csv(delimiter: u8) -> Output {
        Output::plain(OutputFormat::Delimited(DelimitedOptions::with_delimiter(
            delimiter,
        )))
    }

    fn json(layout: JsonLayout, line_ending: LineEnding) -> Output {
        Output::plain(OutputFormat::Json {
            layout,
            line_ending,
        })
    }

    /// Encodes each batch as its own block, numbering rows as the run would, and assembles.
    fn assemble_blocks(output: &Output, batches: &[RecordBatch]) -> Vec<u8> {
        let mut first_row_number = 1;
        let blocks: Vec<Bytes> = batches
            .iter()
            .map(|b| {
                let block =
                    encode_block(output, &schema(), std::slice::from_ref(b), first_row_number);
                first_row_number += b.num_rows() as u64;
                block.unwrap()
            })
            .collect();
        let sizes: Vec<u64> = blocks.iter().map(|b| b.len() as u64).collect();
        assemble(
            output,
            &schema(),
            "out/file",
            &sizes,
            |i| Ok(blocks[i].clone()),
            Vec::new(),
        )
        .unwrap()
    }

    /// The empty file of `output`.
    fn assemble_nothing(output: &Output) -> Vec<u8> {
        assemble(
            output,
            &schema(),
            "out/file",
            &[],
            |_| unreachable!(),
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn parquet_blocks_assemble_into_one_file_equal_to_the_input_with_every_codec() {
        use parquet::basic::Compression;
        let batches = [batch(0, 1000), batch(1000, 10), batch(1010, 500)];
        for (codec, expected_codec) in [
            (ParquetCodec::Snappy, "SNAPPY"),
            (ParquetCodec::Zstd, "ZSTD"),
            (ParquetCodec::Gzip, "GZIP"),
            (ParquetCodec::Lz4, "LZ4_RAW"),
            (ParquetCodec::None, "UNCOMPRESSED"),
        ] {
            let output = Output::plain(OutputFormat::Parquet { codec });
            let file = Bytes::from(assemble_blocks(&output, &batches));
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            let metadata = builder.metadata().clone();
            assert_eq!(
                metadata.num_row_groups(),
                3,
                "{codec:?}: a row group per block"
            );
            for row_group in metadata.row_groups() {
                for column in row_group.columns() {
                    let name = match column.compression() {
                        Compression::GZIP(_) => "GZIP".to_owned(),
                        Compression::ZSTD(_) => "ZSTD".to_owned(),
                        other => other.to_string(),
                    };
                    assert_eq!(name, expected_codec, "{codec:?}");
                }
            }
            let read: Vec<RecordBatch> =
                builder.build().unwrap().collect::<Result<_, _>>().unwrap();
            let expected = arrow_select::concat::concat_batches(&schema(), &batches).unwrap();
            let actual = arrow_select::concat::concat_batches(&read[0].schema(), &read).unwrap();
            assert_eq!(
                actual.schema(),
                schema(),
                "the Arrow schema survives assembly"
            );
            assert_eq!(actual, expected, "{codec:?}");
        }
    }

    #[test]
    fn csv_blocks_concatenate_under_one_header() {
        let batches = [batch(0, 3), batch(3, 2)];
        let file = String::from_utf8(assemble_blocks(&csv(b','), &batches)).unwrap();
        assert!(file.starts_with("id,name,at\n0,,"), "{file}");
        assert_eq!(file.matches("id,name,at").count(), 1);
        assert!(file.contains("4,\"n,\"\"4\"\"\nü\""), "{file}");
    }

    #[test]
    fn tsv_psv_and_custom_delimiters_separate_fields_and_quote_values_holding_them() {
        let batches = [batch(0, 3)];
        for delimiter in [b'\t', b'|', b';'] {
            let file = String::from_utf8(assemble_blocks(&csv(delimiter), &batches)).unwrap();
            let d = delimiter as char;
            assert!(file.starts_with(&format!("id{d}name{d}at\n")), "{file}");
            assert!(
                file.contains(&format!("1{d}\"n,\"\"1\"\"\nü\"{d}")),
                "{file}"
            );
        }
    }

    #[test]
    fn row_numbers_run_across_blocks_from_one_in_the_first_column() {
        let output = Output {
            row_number_column: Some("n".into()),
            ..csv(b',')
        };
        let file =
            String::from_utf8(assemble_blocks(&output, &[batch(0, 2), batch(2, 2)])).unwrap();
        let numbers: Vec<&str> = file
            .lines()
            .filter(|line| !line.starts_with(['ü', '"']))
            .map(|line| line.split(',').next().unwrap())
            .collect();
        assert_eq!(numbers, ["n", "1", "2", "3", "4"], "{file}");
        let parquet = Output {
            row_number_column: Some("n".into()),
            ..Output::plain(OutputFormat::Parquet {
                codec: ParquetCodec::Snappy,
            })
        };
        let file = Bytes::from(assemble_blocks(&parquet, &[batch(0, 2), batch(2, 3)]));
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let numbers: Vec<i64> = read
            .iter()
            .flat_map(|b| {
                b.column_by_name("n")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
    }

    fn parse_json_lines(file: &str) -> Vec<serde_json::Value> {
        file.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn json_blocks_assemble_into_one_array_and_ndjson_blocks_into_lines() {
        let batches = [batch(0, 3), batch(3, 0), batch(3, 2)];
        for line_ending in [LineEnding::Lf, LineEnding::CrLf] {
            let array = String::from_utf8(assemble_blocks(
                &json(JsonLayout::Array, line_ending),
                &batches,
            ))
            .unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&array).unwrap();
            let rows = parsed.as_array().unwrap();
            assert_eq!(rows.len(), 5, "{array}");
            assert_eq!(rows[0]["name"], serde_json::Value::Null, "nulls are kept");
            assert_eq!(rows[4]["name"], "n,\"4\"\nü");
            let lines = String::from_utf8(assemble_blocks(
                &json(JsonLayout::Lines, line_ending),
                &batches,
            ))
            .unwrap();
            let eol = std::str::from_utf8(line_ending.bytes()).unwrap();
            assert_eq!(lines.matches(eol).count(), 5, "{lines:?}");
            assert!(lines.ends_with(eol));
            let parsed = parse_json_lines(&lines);
            assert_eq!(parsed, *rows);
            if line_ending == LineEnding::CrLf {
                assert_eq!(lines.matches('\n').count(), 5, "no bare LF: {lines:?}");
                assert_eq!(
                    array.matches('\n').count(),
                    7,
                    "one row per line: {array:?}"
                );
            }
        }
    }

    #[test]
    fn empty_files_carry_header_or_schema() {
        let empty = assemble_nothing;
        assert_eq!(empty(&csv(b',')), b"id,name,at\n");
        assert_eq!(empty(&json(JsonLayout::Array, LineEnding::Lf)), b"[]\n");
        assert_eq!(empty(&json(JsonLayout::Lines, LineEnding::Lf)), b"");
        let parquet = empty(&Output::plain(OutputFormat::Parquet {
            codec: ParquetCodec::Zstd,
        }));
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(parquet)).unwrap();
        assert_eq!(builder.schema(), &schema());
        assert_eq!(builder.metadata().file_metadata().num_rows(), 0);
    }

    fn decompress(codec: StreamCompression, file: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut plain = Vec::new();
        match codec {
            StreamCompression::Gzip => {
                flate2::read::MultiGzDecoder::new(file).read_to_end(&mut plain)
            }
            StreamCompression::Zstd => zstd::stream::read::Decoder::new(file)
                .unwrap()
                .read_to_end(&mut plain),
            StreamCompression::Bzip2 => {
                bzip2::read::MultiBzDecoder::new(file).read_to_end(&mut plain)
            }
        }
        .unwrap();
        plain
    }

    #[test]
    fn compressed_files_decompress_to_the_uncompressed_file() {
        let batches = [batch(0, 30), batch(30, 0), batch(30, 12)];
        for codec in [
            StreamCompression::Gzip,
            StreamCompression::Zstd,
            StreamCompression::Bzip2,
        ] {
            for output in [
                csv(b','),
                json(JsonLayout::Array, LineEnding::CrLf),
                json(JsonLayout::Lines, LineEnding::Lf),
            ] {
                let compressed = Output {
                    compression: Some(codec),
                    ..output.clone()
                };
                assert_eq!(
                    decompress(codec, &assemble_blocks(&compressed, &batches)),
                    assemble_blocks(&output, &batches),
                    "{codec:?} {output:?}"
                );
                let empty = assemble_nothing(&compressed);
                assert!(!empty.is_empty(), "an empty file is still a valid member");
                assert_eq!(decompress(codec, &empty), assemble_nothing(&output));
            }
        }
    }

    /// The one entry of an archive: its name and bytes.
    fn unpack(archive: Archive, file: &[u8]) -> (String, Vec<u8>) {
        let tar_entry = |plain: &[u8]| {
            let mut tar = tar::Archive::new(plain);
            let mut entry = tar.entries().unwrap().next().unwrap().unwrap();
            let name = entry.path().unwrap().to_str().unwrap().to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            (name, data)
        };
        match archive {
            Archive::Tar => tar_entry(file),
            Archive::Tgz => tar_entry(&decompress(StreamCompression::Gzip, file)),
            Archive::Zip { .. } => {
                let zip = rawzip::ZipArchive::from_slice(file).unwrap();
                let entry = zip.entries().next_entry().unwrap().unwrap();
                let name = String::from_utf8(entry.file_path().as_ref().to_vec()).unwrap();
                let local = zip.get_entry(entry.wayfinder()).unwrap();
                let mut data = Vec::new();
                local
                    .verifying_reader(flate2::bufread::DeflateDecoder::new(local.data()))
                    .read_to_end(&mut data)
                    .unwrap();
                (name, data)
            }
        }
    }

    #[test]
    fn archives_hold_the_assembled_file_named_after_the_object() {
        let batches = [batch(0, 30), batch(30, 0), batch(30, 12)];
        for archive in [Archive::Zip { zip64: false }, Archive::Tar, Archive::Tgz] {
            for output in [csv(b','), json(JsonLayout::Array, LineEnding::CrLf)] {
                let archived = Output {
                    archive: Some(archive),
                    ..output.clone()
                };
                let (name, data) = unpack(archive, &assemble_blocks(&archived, &batches));
                assert_eq!(name, "file", "{archive:?}");
                assert_eq!(data, assemble_blocks(&output, &batches), "{archive:?}");
                let (_, empty) = unpack(archive, &assemble_nothing(&archived));
                assert_eq!(empty, assemble_nothing(&output), "{archive:?}");
            }
        }
    }

    #[test]
    fn a_block_of_another_size_than_staged_fails_the_file() {
        let output = Output {
            archive: Some(Archive::Tar),
            ..csv(b',')
        };
        let block = encode_block(&output, &schema(), &[batch(0, 5)], 1).unwrap();
        let error = assemble(
            &output,
            &schema(),
            "f.tar",
            &[block.len() as u64 + 1],
            |_| Ok(block.clone()),
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(error, FormatError::Inconsistent(_)), "{error}");
    }
}
