//! Checks of Arrow IPC messages from clients, made before Arrow's decoder sees them.
//!
//! Arrow's decoder validates arrays, but it trusts a message's own description of its body:
//! a buffer that reaches past the body makes it panic ("the offset of the new Buffer cannot
//! exceed the existing length"), and a batch may declare billions of rows in a few bytes.
//! [`check_message`] reads the message header (a flatbuffer, verified) and refuses, with a
//! plain reason, anything that does not fit its body or the service's limits: every buffer
//! inside the body, every length and count within bounds, at most so many columns. The
//! decoder then runs behind a panic boundary all the same (see the control plane's ingest),
//! and [`check_values`] bounds the size of one value in the decoded batch.

use arrow_array::cast::AsArray;
use arrow_array::{Array, OffsetSizeTrait};
use arrow_buffer::OffsetBuffer;
use arrow_ipc::{MessageHeader, RecordBatch};
use arrow_schema::DataType;

/// What one message may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcLimits {
    /// Most fields in a schema, nested ones included.
    pub max_columns: usize,
    /// Most rows in one record batch.
    pub max_batch_rows: u64,
}

/// Why a message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcProblem {
    /// The header is not an Arrow IPC message.
    #[error("the message header is not an Arrow IPC message ({0})")]
    NotAMessage(String),
    /// A kind of message a stream of record batches does not carry.
    #[error("an Arrow IPC {0} message is not part of a stream of record batches")]
    UnexpectedKind(&'static str),
    /// The schema has too many fields.
    #[error(
        "the schema has more than {limit} fields (nested ones counted); send fewer columns, \
         or ask the operators to raise ingest.max_columns"
    )]
    TooManyColumns {
        /// The limit.
        limit: usize,
    },
    /// A batch declares too many rows.
    #[error(
        "a record batch declares {rows} rows, over the limit of {limit} per message; send \
         smaller batches (pyarrow: write_table(table, max_chunksize=…))"
    )]
    TooManyRows {
        /// What the batch declares.
        rows: i64,
        /// The limit.
        limit: u64,
    },
    /// A length or count is negative or out of bounds.
    #[error("a record batch is malformed: {0}")]
    Malformed(String),
    /// A value is larger than one value may be.
    #[error(
        "a value of column {column:?} is {bytes} bytes, over the limit of {limit} bytes for one \
         value; ask the operators to raise ingest.max_value_bytes if such values are meant"
    )]
    ValueTooLarge {
        /// The column.
        column: String,
        /// The value's size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is compressed.
    #[error(
        "record batches with compressed buffers are not supported yet; send them uncompressed \
         (pyarrow: the default IpcWriteOptions)"
    )]
    Compressed,
}

/// Checks one message — `header` (Flight's `data_header`) describing `body_len` bytes of body
/// (`data_body`) — against `limits`.
pub fn check_message(header: &[u8], body_len: usize, limits: &IpcLimits) -> Result<(), IpcProblem> {
    let message = arrow_ipc::root_as_message(header)
        .map_err(|error| IpcProblem::NotAMessage(error.to_string()))?;
    match message.header_type() {
        MessageHeader::Schema => {
            let schema = message
                .header_as_schema()
                .ok_or_else(|| IpcProblem::NotAMessage("a schema without a body".into()))?;
            let mut count = 0;
            let mut pending: Vec<arrow_ipc::Field> = schema
                .fields()
                .map(|f| f.iter().collect())
                .unwrap_or_default();
            while let Some(field) = pending.pop() {
                count += 1;
                if count > limits.max_columns {
                    return Err(IpcProblem::TooManyColumns {
                        limit: limits.max_columns,
                    });
                }
                if let Some(children) = field.children() {
                    pending.extend(children.iter());
                }
            }
            Ok(())
        }
        MessageHeader::RecordBatch => {
            let batch = message
                .header_as_record_batch()
                .ok_or_else(|| IpcProblem::Malformed("a record batch without a header".into()))?;
            check_batch(&batch, body_len, limits)
        }
        MessageHeader::DictionaryBatch => {
            let dictionary = message
                .header_as_dictionary_batch()
                .ok_or_else(|| IpcProblem::Malformed("a dictionary without a header".into()))?;
            let batch = dictionary
                .data()
                .ok_or_else(|| IpcProblem::Malformed("a dictionary without values".into()))?;
            check_batch(&batch, body_len, limits)
        }
        MessageHeader::Tensor => Err(IpcProblem::UnexpectedKind("tensor")),
        MessageHeader::SparseTensor => Err(IpcProblem::UnexpectedKind("sparse tensor")),
        // An empty header (Flight's metadata-only messages) carries no data to check.
        MessageHeader::NONE => Ok(()),
        _ => Err(IpcProblem::UnexpectedKind("unknown")),
    }
}

/// Checks a decoded batch: no value (a string, a binary, a fixed-size binary, nested ones
/// included) is larger than `max_value_bytes`. Decoding allocated nothing for the values (they
/// are views of the message), so this runs before any copy of them is made.
pub fn check_values(
    batch: &arrow_array::RecordBatch,
    max_value_bytes: usize,
) -> Result<(), IpcProblem> {
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        let bytes = largest_value(column.as_ref());
        if bytes > max_value_bytes {
            return Err(IpcProblem::ValueTooLarge {
                column: field.name().clone(),
                bytes,
                limit: max_value_bytes,
            });
        }
    }
    Ok(())
}

/// The size of the largest value in `array`, nested arrays' values included.
fn largest_value(array: &dyn Array) -> usize {
    fn longest<O: OffsetSizeTrait>(offsets: &OffsetBuffer<O>) -> usize {
        offsets.lengths().max().unwrap_or(0)
    }
    match array.data_type() {
        DataType::Utf8 => longest(array.as_string::<i32>().offsets()),
        DataType::LargeUtf8 => longest(array.as_string::<i64>().offsets()),
        DataType::Binary => longest(array.as_binary::<i32>().offsets()),
        DataType::LargeBinary => longest(array.as_binary::<i64>().offsets()),
        // A view's low 32 bits are its value's length.
        DataType::Utf8View => array
            .as_string_view()
            .views()
            .iter()
            .map(|view| *view as u32 as usize)
            .max()
            .unwrap_or(0),
        DataType::BinaryView => array
            .as_binary_view()
            .views()
            .iter()
            .map(|view| *view as u32 as usize)
            .max()
            .unwrap_or(0),
        DataType::FixedSizeBinary(size) => usize::try_from(*size).unwrap_or(0),
        DataType::List(_) => largest_value(array.as_list::<i32>().values().as_ref()),
        DataType::LargeList(_) => largest_value(array.as_list::<i64>().values().as_ref()),
        DataType::FixedSizeList(_, _) => {
            largest_value(array.as_fixed_size_list().values().as_ref())
        }
        DataType::Struct(_) => array
            .as_struct()
            .columns()
            .iter()
            .map(|column| largest_value(column.as_ref()))
            .max()
            .unwrap_or(0),
        DataType::Map(_, _) => largest_value(array.as_map().entries()),
        DataType::Dictionary(_, _) => largest_value(array.as_any_dictionary().values().as_ref()),
        _ => 0,
    }
}

fn check_batch(batch: &RecordBatch, body_len: usize, limits: &IpcLimits) -> Result<(), IpcProblem> {
    let malformed = |what: String| Err(IpcProblem::Malformed(what));
    if batch.compression().is_some() {
        return Err(IpcProblem::Compressed);
    }
    let rows = batch.length();
    if rows < 0 {
        return malformed(format!("it declares {rows} rows"));
    }
    if rows as u64 > limits.max_batch_rows {
        return Err(IpcProblem::TooManyRows {
            rows,
            limit: limits.max_batch_rows,
        });
    }
    let body = body_len as u64;
    // A nested array may hold more values than its batch has rows, but values take room in
    // the body: a bit each at the least, but for arrays that are all null or of type null.
    let max_node_length = limits.max_batch_rows.max(body.saturating_mul(8));
    for (index, node) in batch.nodes().iter().flatten().enumerate() {
        let (length, nulls) = (node.length(), node.null_count());
        if length < 0 || length as u64 > max_node_length {
            return malformed(format!("array {index} declares {length} values"));
        }
        if nulls < 0 || nulls > length {
            return malformed(format!(
                "array {index} declares {nulls} nulls in {length} values"
            ));
        }
    }
    let buffers = batch.buffers().map_or(0, |buffers| buffers.len());
    for (index, buffer) in batch.buffers().iter().flatten().enumerate() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let end = u64::try_from(offset)
            .ok()
            .zip(u64::try_from(length).ok())
            .and_then(|(offset, length)| offset.checked_add(length));
        if end.is_none_or(|end| end > body) {
            return malformed(format!(
                "buffer {index} (offset {offset}, length {length}) is not inside the {body_len} \
                 bytes of the message body"
            ));
        }
    }
    let mut variadic = 0u64;
    for count in batch.variadicBufferCounts().iter().flatten() {
        let Ok(count) = u64::try_from(count) else {
            return malformed(format!("it declares {count} variadic buffers"));
        };
        variadic = variadic.saturating_add(count);
    }
    if variadic > buffers as u64 {
        return malformed(format!(
            "it declares {variadic} variadic buffers but has {buffers} buffers"
        ));
    }
    Ok(())
}
