//! Partitioning: rows grouped by the text of their partition columns' values.
//!
//! A partition is named by the values of its columns as they go into object keys: the value's
//! text (Arrow's display form: `2024-05-01`, `12.50`, `true`), with the characters a key or a
//! Hive-style reader would misread percent-encoded, as Hive does, so that pyarrow's and
//! Spark's Hive partitioning read the values back. A null or empty value is Hive's default
//! partition, `__HIVE_DEFAULT_PARTITION__`. Rows are grouped by that text, so two values with
//! the same key (null and the empty string) share one file set instead of colliding on it.

use arrow_array::{Array, RecordBatch, UInt32Array};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{ArrowError, DataType, Schema};
use std::collections::HashMap;
use std::fmt::Write as _;

/// The key text of a null or empty partition value: Hive's, which its readers turn into null.
pub const NULL_PARTITION_VALUE: &str = "__HIVE_DEFAULT_PARTITION__";

/// A partition column the schema cannot partition by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionProblem {
    /// No such column.
    #[error("partition_by: the data has no column {column:?}; its columns are {columns}")]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// The schema's columns, listed.
        columns: String,
    },
    /// A column of a type whose values make poor keys.
    #[error(
        "partition_by: column {column:?} has type {data_type}; partition by boolean, integer, \
         decimal, string, date or timestamp columns (cast it in the query)"
    )]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its Arrow type, displayed.
        data_type: String,
    },
}

/// Whether a column of `data_type` can be partitioned by: types whose display form is exact
/// and short. Floats (their text is not an identity), binary and nested types are not.
fn partitionable(data_type: &DataType) -> bool {
    match data_type {
        DataType::Dictionary(_, values) => partitionable(values),
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _)
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Date32
        | DataType::Date64
        | DataType::Timestamp(_, _) => true,
        _ => false,
    }
}

/// Groups a stream's rows by the values of its partition columns.
#[derive(Debug, Clone)]
pub struct Partitioner {
    /// The partition columns' positions in the schema, in `partition_by` order.
    columns: Vec<usize>,
}

/// The rows of one batch that belong to one partition.
#[derive(Debug, Clone)]
pub struct PartitionRows {
    /// The partition's key text, one per partition column.
    pub values: Vec<String>,
    /// Its rows, in stream order.
    pub batch: RecordBatch,
}

impl Partitioner {
    /// A partitioner by `columns` of `schema`, checked.
    pub fn new(schema: &Schema, columns: &[String]) -> Result<Self, PartitionProblem> {
        let positions = columns
            .iter()
            .map(|name| {
                let (position, field) = schema.column_with_name(name).ok_or_else(|| {
                    PartitionProblem::MissingColumn {
                        column: name.clone(),
                        columns: schema
                            .fields()
                            .iter()
                            .map(|field| format!("{:?}", field.name()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    }
                })?;
                if !partitionable(field.data_type()) {
                    return Err(PartitionProblem::UnsupportedType {
                        column: name.clone(),
                        data_type: field.data_type().to_string(),
                    });
                }
                Ok(position)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { columns: positions })
    }

    /// Splits `batch` by partition, the partitions in order of their first row.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<PartitionRows>, ArrowError> {
        let options = FormatOptions::default();
        let formatters = self
            .columns
            .iter()
            .map(|&column| ArrayFormatter::try_new(batch.column(column).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys: Vec<Vec<String>> = Vec::new();
        let mut rows: Vec<Vec<u32>> = Vec::new();
        let mut position: HashMap<Vec<String>, usize> = HashMap::new();
        let mut text = String::new();
        for row in 0..batch.num_rows() {
            let mut key = Vec::with_capacity(formatters.len());
            for (formatter, &column) in formatters.iter().zip(&self.columns) {
                text.clear();
                if batch.column(column).is_valid(row) {
                    write!(text, "{}", formatter.value(row))
                        .map_err(|error| ArrowError::ExternalError(Box::new(error)))?;
                }
                key.push(key_text(&text));
            }
            let index = *position.entry(key).or_insert_with_key(|key| {
                keys.push(key.clone());
                rows.push(Vec::new());
                keys.len() - 1
            });
            rows[index].push(row as u32);
        }
        if keys.len() == 1 {
            // The common case of sorted or low-cardinality input: no copy.
            return Ok(vec![PartitionRows {
                values: keys.remove(0),
                batch: batch.clone(),
            }]);
        }
        keys.into_iter()
            .zip(rows)
            .map(|(values, rows)| {
                let batch = arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))?;
                Ok(PartitionRows { values, batch })
            })
            .collect()
    }
}

/// A value's text as it goes into keys: Hive's escaping, plus dots when the value is only dots
/// (`.` and `..` are not allowed as folder names).
pub fn key_text(value: &str) -> String {
    if value.is_empty() {
        return NULL_PARTITION_VALUE.to_owned();
    }
    let only_dots = value.chars().all(|c| c == '.');
    let mut text = String::with_capacity(value.len());
    for c in value.chars() {
        let escape = matches!(
            c,
            '"' | '#' | '%' | '\'' | '*' | '/' | ':' | '=' | '?' | '\\' | '{' | '[' | ']' | '^'
        ) || c.is_ascii_control()
            || (only_dots && c == '.');
        if escape {
            let _ = write!(text, "%{:02X}", c as u32);
        } else {
            text.push(c);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Date32Array, Int64Array, StringArray};
    use arrow_schema::Field;
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![
                Some("DE"),
                Some("FR"),
                None,
                Some("DE"),
                Some(""),
                Some("a/b=c"),
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6])),
            Arc::new(Date32Array::from(vec![19_000; 6])),
        ];
        RecordBatch::try_from_iter(["country", "id", "day"].into_iter().zip(columns)).unwrap()
    }

    fn ids(batch: &RecordBatch) -> Vec<i64> {
        let ids = batch.column(1).as_any().downcast_ref::<Int64Array>();
        ids.unwrap().values().to_vec()
    }

    #[test]
    fn rows_are_grouped_by_key_text_in_order_of_first_appearance() {
        let batch = batch();
        let partitioner = Partitioner::new(&batch.schema(), &["country".into()]).unwrap();
        let parts = partitioner.split(&batch).unwrap();
        let summary: Vec<(Vec<String>, Vec<i64>)> = parts
            .iter()
            .map(|part| (part.values.clone(), ids(&part.batch)))
            .collect();
        assert_eq!(
            summary,
            vec![
                (vec!["DE".to_owned()], vec![1, 4]),
                (vec!["FR".to_owned()], vec![2]),
                // Null and empty share Hive's default partition.
                (vec![NULL_PARTITION_VALUE.to_owned()], vec![3, 5]),
                (vec!["a%2Fb%3Dc".to_owned()], vec![6]),
            ]
        );
    }

    #[test]
    fn several_columns_make_one_key_and_one_value_needs_no_copy() {
        let batch = batch().slice(0, 1);
        let partitioner =
            Partitioner::new(&batch.schema(), &["day".into(), "country".into()]).unwrap();
        let parts = partitioner.split(&batch).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].values, vec!["2022-01-08", "DE"]);
        assert_eq!(parts[0].batch, batch);
    }

    #[test]
    fn missing_and_unsuitable_columns_are_refused_by_name() {
        let schema = Schema::new(vec![
            Field::new("price", DataType::Float64, true),
            Field::new("country", DataType::Utf8, true),
        ]);
        let missing = Partitioner::new(&schema, &["region".into()]).unwrap_err();
        assert!(missing.to_string().contains("\"region\""), "{missing}");
        assert!(missing.to_string().contains("\"country\""), "{missing}");
        let float = Partitioner::new(&schema, &["price".into()]).unwrap_err();
        assert!(
            float.to_string().contains("\"price\" has type Float64"),
            "{float}"
        );
    }

    #[test]
    fn key_text_escapes_what_keys_and_hive_readers_misread() {
        assert_eq!(key_text("São Paulo"), "São Paulo");
        assert_eq!(key_text("2024-05-01T10:00:00"), "2024-05-01T10%3A00%3A00");
        assert_eq!(key_text("50%"), "50%25");
        assert_eq!(key_text("line\nbreak"), "line%0Abreak");
        assert_eq!(key_text(".."), "%2E%2E");
        assert_eq!(key_text("1.5"), "1.5");
        assert_eq!(key_text(""), NULL_PARTITION_VALUE);
    }
}
