//! Assembly: a file's blocks, in order, into the delivered bytes.
//!
//! The assembler is synchronous and writes to any [`Write`]: the uploader gives it a writer
//! that cuts the output into multipart-upload parts, so a file is never held whole in memory.
//! Blocks are fetched one at a time through a callback.

use crate::FormatError;
use crate::encode::parquet_properties;
use crate::format::{OutputFormat, ParquetCodec};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::writer::SerializedFileWriter;
use std::io::Write;
use std::sync::Arc;

/// Writes the file made of `block_count` blocks to `out`. `fetch(i)` returns block `i`.
/// With no blocks, writes the empty file of the format (header only, or schema only).
pub fn assemble<W, F>(
    format: OutputFormat,
    schema: &SchemaRef,
    block_count: usize,
    mut fetch: F,
    mut out: W,
) -> Result<W, FormatError>
where
    W: Write + Send,
    F: FnMut(usize) -> Result<Bytes, FormatError>,
{
    match format {
        OutputFormat::Delimited { delimiter, header } => {
            if header {
                let mut writer = arrow_csv::WriterBuilder::new()
                    .with_delimiter(delimiter)
                    .with_header(true)
                    .build(&mut out);
                writer.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for index in 0..block_count {
                out.write_all(&fetch(index)?)?;
            }
            out.flush()?;
            Ok(out)
        }
        OutputFormat::Parquet { codec } if block_count == 0 => {
            let writer =
                ArrowWriter::try_new(out, schema.clone(), Some(parquet_properties(codec)))?;
            Ok(writer.into_inner()?)
        }
        OutputFormat::Parquet { codec } => assemble_parquet(codec, block_count, fetch, out),
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
    use crate::encode::encode_block;
    use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMillisecondArray};
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

    fn assemble_blocks(format: OutputFormat, batches: &[RecordBatch]) -> Vec<u8> {
        let blocks: Vec<Bytes> = batches
            .iter()
            .map(|b| encode_block(format, &schema(), std::slice::from_ref(b)).unwrap())
            .collect();
        assemble(
            format,
            &schema(),
            blocks.len(),
            |i| Ok(blocks[i].clone()),
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
            let file = Bytes::from(assemble_blocks(OutputFormat::Parquet { codec }, &batches));
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
        let file = String::from_utf8(assemble_blocks(
            OutputFormat::Delimited {
                delimiter: b',',
                header: true,
            },
            &batches,
        ))
        .unwrap();
        assert!(file.starts_with("id,name,at\n0,,"), "{file}");
        assert_eq!(file.matches("id,name,at").count(), 1);
        assert!(file.contains("4,\"n,\"\"4\"\"\nü\""), "{file}");
    }

    #[test]
    fn tsv_psv_and_custom_delimiters_separate_fields_and_quote_values_holding_them() {
        let batches = [batch(0, 3)];
        for delimiter in [b'\t', b'|', b';'] {
            let format = OutputFormat::Delimited {
                delimiter,
                header: true,
            };
            let file = String::from_utf8(assemble_blocks(format, &batches)).unwrap();
            let d = delimiter as char;
            assert!(file.starts_with(&format!("id{d}name{d}at\n")), "{file}");
            assert!(
                file.contains(&format!("1{d}\"n,\"\"1\"\"\nü\"{d}")),
                "{file}"
            );
        }
    }

    #[test]
    fn empty_files_carry_header_or_schema() {
        let csv = assemble(
            OutputFormat::Delimited {
                delimiter: b',',
                header: true,
            },
            &schema(),
            0,
            |_| unreachable!(),
            Vec::new(),
        )
        .unwrap();
        assert_eq!(csv, b"id,name,at\n");
        let parquet = assemble(
            OutputFormat::Parquet {
                codec: ParquetCodec::Zstd,
            },
            &schema(),
            0,
            |_| unreachable!(),
            Vec::new(),
        )
        .unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(parquet)).unwrap();
        assert_eq!(builder.schema(), &schema());
        assert_eq!(builder.metadata().file_metadata().num_rows(), 0);
    }
}
