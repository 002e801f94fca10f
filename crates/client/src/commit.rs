//! Ending an export stream with its commit.
//!
//! filedrop delivers an export only when the stream's last message carries an
//! `ExportCommit` with the rows and record batch messages sent. [`committed`] wraps the
//! encoded stream: it counts what goes out (at the message level, so batches that the encoder
//! split count as the messages they became) and, once the source ends without an error,
//! sends the commit alone as a message with metadata only. A source that fails sends no
//! commit, so the server refuses the export and delivers nothing.

use arrow_flight::FlightData;
use arrow_flight::error::FlightError;
use filedrop_proto::v1::ExportCommit;
use futures::{Stream, StreamExt};
use prost::Message;
use std::sync::{Arc, Mutex, PoisonError};

/// What a stream has sent so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Rows in the record batch messages.
    pub rows: u64,
    /// Record batch messages.
    pub batches: u64,
}

impl Tally {
    /// Counts one outgoing message: a record batch adds its rows and one batch; a schema,
    /// a dictionary batch or metadata alone add nothing.
    pub fn observe(&mut self, data: &FlightData) {
        if let Some(rows) = record_batch_rows(&data.data_header) {
            self.rows += rows;
            self.batches += 1;
        }
    }

    /// The commit of what was counted.
    pub fn commit(&self) -> ExportCommit {
        ExportCommit {
            rows: Some(self.rows),
            batches: Some(self.batches),
        }
    }

    /// The message that ends the stream: the commit as `app_metadata`, nothing else.
    pub fn commit_message(&self) -> FlightData {
        FlightData {
            app_metadata: self.commit().encode_to_vec().into(),
            ..FlightData::default()
        }
    }
}

/// The rows of a record batch message, from its IPC header; `None` for any other message.
pub fn record_batch_rows(data_header: &[u8]) -> Option<u64> {
    let message = arrow_ipc::root_as_message(data_header).ok()?;
    let batch = message.header_as_record_batch()?;
    u64::try_from(batch.length()).ok()
}

/// `data`, then its commit once it has ended without an error. After an error nothing more
/// is sent: the server sees a stream without a commit and delivers nothing.
pub fn committed<S>(data: S) -> impl Stream<Item = Result<FlightData, FlightError>> + Send
where
    S: Stream<Item = Result<FlightData, FlightError>> + Send,
{
    #[derive(Default)]
    struct Seen {
        tally: Tally,
        failed: bool,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let counting = seen.clone();
    let counted = data.map(move |item| {
        let mut seen = counting.lock().unwrap_or_else(PoisonError::into_inner);
        match &item {
            Ok(data) => seen.tally.observe(data),
            Err(_) => seen.failed = true,
        }
        item
    });
    let commit = futures::stream::once(async move {
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        (!seen.failed).then(|| Ok(seen.tally.commit_message()))
    })
    .filter_map(futures::future::ready);
    counted
        .take_while({
            let mut ok = true;
            move |item| {
                let go_on = ok;
                ok = item.is_ok();
                futures::future::ready(go_on)
            }
        })
        .chain(commit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, RecordBatch};
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_schema::{DataType, Field, Schema};
    use futures::TryStreamExt;

    fn batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .unwrap()
    }

    fn commit_of(message: &FlightData) -> ExportCommit {
        assert!(message.data_header.is_empty() && message.data_body.is_empty());
        ExportCommit::decode(message.app_metadata.as_ref()).unwrap()
    }

    #[tokio::test]
    async fn the_commit_counts_the_messages_the_encoder_sent() {
        // 300,000 rows of 8 bytes are over a 64 KiB message size: split into many.
        let batches = vec![Ok(batch(10)), Ok(batch(300_000)), Ok(batch(0))];
        let encoded = FlightDataEncoderBuilder::new()
            .with_max_flight_data_size(64 * 1024)
            .build(futures::stream::iter(batches));
        let messages: Vec<FlightData> = committed(encoded).try_collect().await.unwrap();
        let last = commit_of(messages.last().unwrap());
        let batch_messages = messages
            .iter()
            .filter(|m| record_batch_rows(&m.data_header).is_some())
            .count() as u64;
        assert!(batch_messages > 3, "the large batch was split");
        assert_eq!(last.rows, Some(300_010));
        assert_eq!(last.batches, Some(batch_messages));
    }

    #[tokio::test]
    async fn an_empty_stream_commits_zero_rows() {
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(batch(0).schema())
            .build(futures::stream::empty());
        let messages: Vec<FlightData> = committed(encoded).try_collect().await.unwrap();
        let last = commit_of(messages.last().unwrap());
        assert_eq!((last.rows, last.batches), (Some(0), Some(0)));
        assert!(!messages.last().unwrap().app_metadata.is_empty());
    }

    #[tokio::test]
    async fn a_source_that_fails_sends_no_commit() {
        let batches = vec![
            Ok(batch(10)),
            Err(FlightError::ExternalError("the file is corrupt".into())),
            Ok(batch(10)),
        ];
        let encoded = FlightDataEncoderBuilder::new().build(futures::stream::iter(batches));
        let items: Vec<_> = committed(encoded).collect().await;
        assert!(items.last().unwrap().is_err(), "the error ends the stream");
        assert!(
            items
                .iter()
                .filter_map(|item| item.as_ref().ok())
                .all(|m| m.app_metadata.is_empty()),
            "no commit after an error"
        );
    }
}
