//! Segments: received rows staged as Arrow IPC streams, one per encode task.

use crate::FormatError;
use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;

/// Builds one segment in memory from record batches.
pub struct SegmentWriter {
    writer: StreamWriter<Vec<u8>>,
    rows: u64,
}

impl SegmentWriter {
    /// Starts a segment of `schema`.
    pub fn new(schema: &Schema) -> Result<Self, FormatError> {
        Ok(Self {
            writer: StreamWriter::try_new(Vec::new(), schema)?,
            rows: 0,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        self.writer.write(batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Encoded bytes so far.
    pub fn size(&self) -> usize {
        self.writer.get_ref().len()
    }

    /// Ends the segment and returns its bytes.
    pub fn finish(mut self) -> Result<Bytes, FormatError> {
        self.writer.finish()?;
        Ok(Bytes::from(self.writer.into_inner()?))
    }
}

/// Reads a segment back into its schema and batches.
pub fn read_segment(bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>), FormatError> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Serializes a schema alone (an IPC stream with no batches), for tasks that carry it.
pub fn schema_to_bytes(schema: &Schema) -> Result<Vec<u8>, FormatError> {
    Ok(SegmentWriter::new(schema)?.finish()?.to_vec())
}

/// Reads a schema serialized by [`schema_to_bytes`].
pub fn schema_from_bytes(bytes: &[u8]) -> Result<SchemaRef, FormatError> {
    Ok(StreamReader::try_new(std::io::Cursor::new(bytes), None)?.schema())
}
