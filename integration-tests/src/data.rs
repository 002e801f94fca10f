//! The sample table: what a query engine might send, with the awkward parts delivery must get
//! right — delimiters, quotes, line breaks and non-ASCII in strings, leading and trailing
//! spaces, timestamps with a zone, and nulls in every nullable column.

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::sync::Arc;

/// The schema of the sample table.
pub fn schema() -> SchemaRef {
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

fn label(i: i64) -> Option<String> {
    match i % 11 {
        0 => None,
        1 => Some(format!("comma, separated {i}")),
        2 => Some(format!("a \"quoted\" word {i}")),
        3 => Some(format!("line\nbreak {i}")),
        4 => Some(format!("carriage\r\nreturn {i}")),
        5 => Some(format!("ünïcødé ✓ 数据 {i}")),
        6 => Some(format!("  padded {i}  ")),
        7 => Some(format!("semi;colon|pipe\ttab {i}")),
        _ => Some(format!("plain {i}")),
    }
}

/// Rows `[start, start + rows)` of the sample table as one batch.
pub fn batch(start: i64, rows: i64) -> RecordBatch {
    let ids: Vec<i64> = (start..start + rows).collect();
    let amount: Float64Array = ids
        .iter()
        .map(|i| (i % 7 != 0).then_some(*i as f64 * 1.25 - 1000.5))
        .collect();
    let labels: StringArray = ids.iter().map(|i| label(*i)).collect();
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
    .expect("the sample batch matches its schema")
}

/// The sample table of `rows` rows, in batches of `batch_rows`.
pub fn table(rows: i64, batch_rows: i64) -> Vec<RecordBatch> {
    lazy_table(rows, batch_rows).collect()
}

/// The sample table, generated batch by batch as it is consumed.
pub fn lazy_table(rows: i64, batch_rows: i64) -> impl Iterator<Item = RecordBatch> + Send {
    (0..rows)
        .step_by(batch_rows as usize)
        .map(move |start| batch(start, batch_rows.min(rows - start)))
}

/// All batches concatenated.
pub fn concat(batches: &[RecordBatch]) -> RecordBatch {
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(schema);
    arrow_select::concat::concat_batches(&schema, batches).expect("batches share a schema")
}

/// The rows of a CSV file of the sample table, read with a header by arrow-csv.
pub fn csv_rows(bytes: bytes::Bytes) -> u64 {
    arrow_csv::ReaderBuilder::new(schema())
        .with_header(true)
        .build(std::io::Cursor::new(bytes))
        .expect("a CSV reader")
        .map(|batch| batch.expect("reading CSV").num_rows() as u64)
        .sum()
}

/// The SHA-256 of `bytes`, lowercase hexadecimal (as manifests give it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
