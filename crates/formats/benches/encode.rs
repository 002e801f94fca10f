//! Encoding speed per format and compression, on one core, beside the Rust writers the
//! encoders are built on (`arrow-csv`, `arrow-json`, parquet's `ArrowWriter`).
//!
//! Each case encodes the bench table (1,000,000 rows unless `FILEDROP_BENCH_ROWS` says
//! otherwise) in segments of 131,072 rows, as encoders do, and assembles them into one file in
//! memory, as uploaders do; the best of five runs is reported in rows/s and MB/s of the file.
//! The table is also written to `target/bench-table.arrow` (Arrow IPC), so that
//! `bench/formats.py` times pyarrow and DuckDB on the very same data.
//!
//! `cargo bench -p filedrop-formats --bench encode` (or `bash bench/formats.sh`, which also
//! runs the Python side); results are recorded in `docs/BENCHMARKS.md`.

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use filedrop_formats::archive::Archive;
use filedrop_formats::assemble::assemble;
use filedrop_formats::compress::StreamCompression;
use filedrop_formats::delimited::{DelimitedOptions, LineEnding};
use filedrop_formats::encode::encode_block;
use filedrop_formats::format::{JsonLayout, Output, OutputFormat, ParquetCodec};
use parquet::arrow::ArrowWriter;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEGMENT_ROWS: usize = 131_072;
const RUNS: usize = 5;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, true),
        Field::new("label", DataType::Utf8, true),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("active", DataType::Boolean, true),
    ]))
}

/// Rows `[start, start + rows)`: numbers, text with a comma or a quote in a fifth of the rows,
/// timestamps with a zone, and nulls.
fn batch(start: i64, rows: i64) -> RecordBatch {
    let ids: Vec<i64> = (start..start + rows).collect();
    let amount: Float64Array = ids
        .iter()
        .map(|i| (i % 7 != 0).then_some(*i as f64 * 1.25 - 1000.5))
        .collect();
    let labels: StringArray = ids
        .iter()
        .map(|i| match i % 10 {
            0 => None,
            1 => Some(format!("comma, separated {i}")),
            2 => Some(format!("a \"quoted\" word {i}")),
            _ => Some(format!("customer-{i}-segment-{}", i % 97)),
        })
        .collect();
    let created_at: TimestampMicrosecondArray = ids
        .iter()
        .map(|i| (i % 13 != 0).then(|| 1_767_225_600_000_000 + i * 1_000_003))
        .collect();
    let active: BooleanArray = ids
        .iter()
        .map(|i| (i % 5 != 0).then_some(i % 2 == 0))
        .collect();
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)) as ArrayRef,
            Arc::new(amount),
            Arc::new(labels),
            Arc::new(created_at.with_timezone("UTC")),
            Arc::new(active),
        ],
    )
    .unwrap()
}

fn table(rows: i64) -> Vec<RecordBatch> {
    (0..rows)
        .step_by(SEGMENT_ROWS)
        .map(|start| batch(start, (SEGMENT_ROWS as i64).min(rows - start)))
        .collect()
}

/// filedrop's path: each segment encoded into a block, the blocks assembled into one file.
fn filedrop_file(output: &Output, segments: &[RecordBatch]) -> usize {
    let schema = schema();
    let mut first_row = 1;
    let blocks: Vec<Bytes> = segments
        .iter()
        .map(|segment| {
            let block = encode_block(output, &schema, std::slice::from_ref(segment), first_row);
            first_row += segment.num_rows() as u64;
            block.unwrap()
        })
        .collect();
    let sizes: Vec<u64> = blocks.iter().map(|block| block.len() as u64).collect();
    let file = assemble(
        output,
        &schema,
        "bench/file",
        &sizes,
        |index| Ok(blocks[index].clone()),
        Vec::new(),
    )
    .unwrap();
    file.len()
}

fn arrow_csv_file(segments: &[RecordBatch]) -> usize {
    let mut writer = arrow_csv::WriterBuilder::new()
        .with_header(true)
        .build(Vec::new());
    for segment in segments {
        writer.write(segment).unwrap();
    }
    writer.into_inner().len()
}

fn arrow_ndjson_file(segments: &[RecordBatch]) -> usize {
    let mut writer = arrow_json::LineDelimitedWriter::new(Vec::new());
    for segment in segments {
        writer.write(segment).unwrap();
    }
    writer.finish().unwrap();
    writer.into_inner().len()
}

fn parquet_writer_file(codec: ParquetCodec, segments: &[RecordBatch]) -> usize {
    let properties = filedrop_formats::encode::parquet_properties(codec);
    let mut writer = ArrowWriter::try_new(Vec::new(), schema(), Some(properties)).unwrap();
    for segment in segments {
        writer.write(segment).unwrap();
        writer.flush().unwrap();
    }
    writer.into_inner().unwrap().len()
}

/// What writes the file of a case.
enum Writer {
    /// `arrow-csv`'s writer, with a header.
    ArrowCsv,
    /// `arrow-json`'s NDJSON writer.
    ArrowNdjson,
    /// parquet's `ArrowWriter`, one row group per segment, with the encoders' properties.
    ArrowParquet(ParquetCodec),
    /// The encoders and the assembler.
    Filedrop(Output),
}

/// The best of `RUNS` runs, and the file's size.
fn best(run: impl Fn() -> usize) -> (Duration, usize) {
    let mut fastest = Duration::MAX;
    let mut size = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        size = black_box(run());
        fastest = fastest.min(started.elapsed());
    }
    (fastest, size)
}

fn text(format: OutputFormat) -> Output {
    Output::plain(format)
}

fn csv() -> OutputFormat {
    OutputFormat::Delimited(DelimitedOptions::with_delimiter(b','))
}

fn main() {
    // `cargo bench` passes `--bench`; a filter, if any, selects cases by name.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let rows: i64 = std::env::var("FILEDROP_BENCH_ROWS")
        .ok()
        .and_then(|rows| rows.parse().ok())
        .unwrap_or(1_000_000);
    let segments = table(rows);
    write_table_for_python(&segments);

    let with = |format: OutputFormat,
                compression: Option<StreamCompression>,
                archive: Option<Archive>| Output {
        compression,
        archive,
        ..text(format)
    };
    let json = |layout| OutputFormat::Json {
        layout,
        line_ending: LineEnding::Lf,
    };
    let mut cases: Vec<(String, Writer)> = vec![
        ("arrow-csv Writer (baseline)".into(), Writer::ArrowCsv),
        ("filedrop CSV".into(), Writer::Filedrop(text(csv()))),
    ];
    for (name, compression) in [
        ("gzip", StreamCompression::Gzip),
        ("zstd", StreamCompression::Zstd),
        ("bzip2", StreamCompression::Bzip2),
    ] {
        cases.push((
            format!("filedrop CSV + {name}"),
            Writer::Filedrop(with(csv(), Some(compression), None)),
        ));
    }
    for (name, archive) in [
        ("zip", Archive::Zip { zip64: false }),
        ("tar", Archive::Tar),
        ("tgz", Archive::Tgz),
    ] {
        cases.push((
            format!("filedrop CSV in {name}"),
            Writer::Filedrop(with(csv(), None, Some(archive))),
        ));
    }
    cases.push((
        "arrow-json LineDelimitedWriter (baseline)".into(),
        Writer::ArrowNdjson,
    ));
    cases.push((
        "filedrop NDJSON".into(),
        Writer::Filedrop(text(json(JsonLayout::Lines))),
    ));
    cases.push((
        "filedrop JSON array".into(),
        Writer::Filedrop(text(json(JsonLayout::Array))),
    ));
    for (name, codec) in [
        ("snappy", ParquetCodec::Snappy),
        ("zstd", ParquetCodec::Zstd),
        ("gzip", ParquetCodec::Gzip),
        ("lz4", ParquetCodec::Lz4),
        ("none", ParquetCodec::None),
    ] {
        cases.push((
            format!("parquet ArrowWriter {name} (baseline)"),
            Writer::ArrowParquet(codec),
        ));
        cases.push((
            format!("filedrop Parquet {name}"),
            Writer::Filedrop(text(OutputFormat::Parquet { codec })),
        ));
    }

    println!("rows: {rows}, segments of {SEGMENT_ROWS} rows, best of {RUNS} runs, one thread");
    println!("| case | seconds | rows/s | file MB | MB/s |");
    println!("|---|---|---|---|---|");
    for (name, run) in &cases {
        if filter
            .as_ref()
            .is_some_and(|filter| !name.contains(filter.as_str()))
        {
            continue;
        }
        let (time, size) = best(|| match run {
            Writer::ArrowCsv => arrow_csv_file(&segments),
            Writer::ArrowNdjson => arrow_ndjson_file(&segments),
            Writer::ArrowParquet(codec) => parquet_writer_file(*codec, &segments),
            Writer::Filedrop(output) => filedrop_file(output, &segments),
        });
        let seconds = time.as_secs_f64();
        println!(
            "| {name} | {seconds:.3} | {:.0} | {:.1} | {:.0} |",
            rows as f64 / seconds,
            size as f64 / 1e6,
            size as f64 / 1e6 / seconds
        );
    }
}

/// Writes the table as an Arrow IPC file beside the build, for `bench/formats.py`.
fn write_table_for_python(segments: &[RecordBatch]) {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
        });
    std::fs::create_dir_all(&target).unwrap();
    let path = target.join("bench-table.arrow");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &schema()).unwrap();
    for segment in segments {
        writer.write(segment).unwrap();
    }
    writer.finish().unwrap();
    println!("table written to {}", path.display());
}
