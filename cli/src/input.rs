//! Reading the file an export sends: Parquet, CSV (with a header; types inferred from the
//! first rows), an Arrow IPC file, or an Arrow IPC stream (`-`, standard input). Batches are
//! read on a blocking thread and handed over one at a time, so memory stays at a batch or two
//! whatever the file's size.

use anyhow::Context;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::SchemaRef;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Rows per batch read from Parquet and CSV.
const BATCH_ROWS: usize = 65_536;

/// The kinds of file `filedrop export` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Parquet (`.parquet`, `.pq`).
    Parquet,
    /// CSV with a header row (`.csv`); column types are inferred from the first 1,000 rows.
    Csv,
    /// An Arrow IPC file (`.arrow`, `.feather`).
    Arrow,
    /// An Arrow IPC stream (`.arrows`; `-` reads one from standard input).
    ArrowStream,
}

impl InputFormat {
    /// The format a path's extension names.
    pub fn of(path: &str) -> anyhow::Result<Self> {
        if path == "-" {
            return Ok(Self::ArrowStream);
        }
        let extension = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_ascii_lowercase();
        Ok(match extension.as_str() {
            "parquet" | "pq" => Self::Parquet,
            "csv" => Self::Csv,
            "arrow" | "feather" | "ipc" => Self::Arrow,
            "arrows" => Self::ArrowStream,
            _ => anyhow::bail!(
                "{path}: cannot tell the format from the extension; name it with --input-format \
                 (parquet, csv, arrow, arrow-stream)"
            ),
        })
    }
}

/// What the progress bar reads: rows and bytes read so far, and the totals when known.
#[derive(Debug, Default)]
pub struct Progress {
    /// Rows read.
    pub rows: AtomicU64,
    /// Bytes of the input read (for Parquet, estimated from the rows).
    pub bytes: AtomicU64,
}

/// An opened input: its schema, its size and row count when known, and its batches.
pub struct Input {
    /// The schema.
    pub schema: SchemaRef,
    /// The input's size in bytes, when it is a file.
    pub total_bytes: Option<u64>,
    /// Rows in the input, when the file says.
    pub total_rows: Option<u64>,
    /// The batches, in order.
    pub batches: Box<dyn Iterator<Item = anyhow::Result<RecordBatch>> + Send>,
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.progress
            .bytes
            .fetch_add(read as u64, Ordering::Relaxed);
        Ok(read)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, position: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(position)
    }
}

thread_local! {
    /// Set while [`guarded`] reads: a panic then is reported as the file's error, not printed.
    static READING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the panic hook quiet for panics inside [`guarded`] (a reader tripped by a malformed
/// file, reported as an error naming the file); others print as usual.
pub fn quiet_reader_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !READING.with(std::cell::Cell::get) {
            default(info);
        }
    }));
}

/// Runs `read` (opening the input, or reading its next batch); a panic of the Parquet, CSV
/// or Arrow reader, which a malformed file can cause, becomes an error naming the file.
pub fn guarded<T>(path: &str, read: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    READING.with(|reading| reading.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    READING.with(|reading| reading.set(false));
    outcome.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no reason given".to_owned());
        Err(anyhow::anyhow!(
            "{path} is malformed: its reader gave up ({why})"
        ))
    })
}

/// Opens `path` as `format`; reading counts into `progress`.
pub fn open(path: &str, format: InputFormat, progress: Arc<Progress>) -> anyhow::Result<Input> {
    if path == "-" {
        let reader = arrow_ipc::reader::StreamReader::try_new(
            Counting {
                inner: BufReader::new(std::io::stdin()),
                progress: progress.clone(),
            },
            None,
        )
        .context("standard input is not an Arrow IPC stream")?;
        return Ok(streamed(reader, None));
    }
    let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let size = file.metadata().map(|m| m.len()).ok();
    match format {
        InputFormat::Parquet => {
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .with_context(|| format!("{path} is not a Parquet file"))?;
            let rows = builder.metadata().file_metadata().num_rows().max(0) as u64;
            let schema = builder.schema().clone();
            let reader = builder.with_batch_size(BATCH_ROWS).build()?;
            // Parquet is read by row group, not as a stream: bytes follow the rows.
            let per_row = size.unwrap_or(0) as f64 / rows.max(1) as f64;
            let progress = progress.clone();
            let mut read_rows = 0u64;
            Ok(Input {
                schema,
                total_bytes: size,
                total_rows: Some(rows),
                batches: Box::new(reader.map(move |batch| {
                    let batch = batch?;
                    read_rows += batch.num_rows() as u64;
                    progress
                        .bytes
                        .store((read_rows as f64 * per_row) as u64, Ordering::Relaxed);
                    Ok(batch)
                })),
            })
        }
        InputFormat::Csv => {
            let mut sample = BufReader::new(File::open(path)?);
            let (schema, _) = arrow_csv::reader::Format::default()
                .with_header(true)
                .infer_schema(&mut sample, Some(1_000))
                .with_context(|| format!("{path}: the CSV header and first rows cannot be read"))?;
            let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
                .with_header(true)
                .with_batch_size(BATCH_ROWS)
                .build(Counting {
                    inner: BufReader::new(file),
                    progress,
                })?;
            Ok(streamed(reader, size))
        }
        InputFormat::Arrow => {
            let reader = arrow_ipc::reader::FileReader::try_new(
                Counting {
                    inner: BufReader::new(file),
                    progress,
                },
                None,
            )
            .with_context(|| format!("{path} is not an Arrow IPC file"))?;
            Ok(streamed(reader, size))
        }
        InputFormat::ArrowStream => {
            let reader = arrow_ipc::reader::StreamReader::try_new(
                Counting {
                    inner: BufReader::new(file),
                    progress,
                },
                None,
            )
            .with_context(|| format!("{path} is not an Arrow IPC stream"))?;
            Ok(streamed(reader, size))
        }
    }
}

/// An input read as it streams (CSV, Arrow IPC): its row count is not known ahead.
fn streamed(reader: impl RecordBatchReader + Send + 'static, total_bytes: Option<u64>) -> Input {
    Input {
        schema: reader.schema(),
        total_bytes,
        total_rows: None,
        batches: Box::new(reader.map(|batch| batch.map_err(anyhow::Error::from))),
    }
}
