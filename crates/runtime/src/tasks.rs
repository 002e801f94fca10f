//! What a queued message is about, in words: the run it belongs to and the work it asks for.
//! Used where a message must be explained without being handled — a task that panicked, a
//! message that died in the dead-letter queue.

use crate::broker::Queue;
use filedrop_proto::jobs::v1::{EncodeTask, FinalizeTask, UploadTask, WorkerEvent, worker_event};
use prost::Message;

/// A message of a work queue, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    /// The run it belongs to.
    pub run_id: String,
    /// What it asks for, e.g. `upload of file 3`.
    pub what: String,
}

/// Describes a message of `queue`; `None` when it cannot be decoded.
pub fn describe(queue: Queue, payload: &[u8]) -> Option<TaskSummary> {
    let (run_id, what) = match queue {
        Queue::Encode => {
            let task = EncodeTask::decode(payload).ok()?;
            let what = format!("encoding of segment {}", task.segment_index);
            (task.run_id, what)
        }
        Queue::Upload => {
            let task = UploadTask::decode(payload).ok()?;
            let what = format!("upload of file {}", task.file_number);
            (task.run_id, what)
        }
        Queue::Finalize => {
            let task = FinalizeTask::decode(payload).ok()?;
            let what = if task.run_failed || task.run_cancelled {
                "clean-up of the stopped run"
            } else {
                "finalize step (manifest and success marker)"
            };
            (task.run_id, what.to_owned())
        }
        Queue::Events => {
            let event = WorkerEvent::decode(payload).ok()?;
            let what = match event.event {
                Some(worker_event::Event::SegmentEncoded(encoded)) => format!(
                    "handling of the report that segment {} is encoded",
                    encoded.segment_index
                ),
                Some(worker_event::Event::FileUploaded(uploaded)) => format!(
                    "handling of the report that file {} is uploaded",
                    uploaded.file_number
                ),
                Some(worker_event::Event::RunFinalized(_)) => {
                    "handling of the report that the run is finalized".to_owned()
                }
                Some(worker_event::Event::TaskFailed(_)) => {
                    "handling of a worker's failure report".to_owned()
                }
                None => "handling of a worker's report".to_owned(),
            };
            (event.run_id, what)
        }
    };
    (!run_id.is_empty()).then_some(TaskSummary { run_id, what })
}

#[cfg(test)]
mod tests {
    use super::*;
    use filedrop_proto::jobs::v1::FileUploaded;

    #[test]
    fn messages_are_described_by_their_run_and_work() {
        let task = UploadTask {
            run_id: "r1".into(),
            file_number: 3,
            ..Default::default()
        };
        assert_eq!(
            describe(Queue::Upload, &task.encode_to_vec()),
            Some(TaskSummary {
                run_id: "r1".into(),
                what: "upload of file 3".into()
            })
        );
        let task = FinalizeTask {
            run_id: "r2".into(),
            run_failed: true,
            ..Default::default()
        };
        assert_eq!(
            describe(Queue::Finalize, &task.encode_to_vec())
                .unwrap()
                .what,
            "clean-up of the stopped run"
        );
        let event = WorkerEvent {
            run_id: "r3".into(),
            event: Some(worker_event::Event::FileUploaded(FileUploaded {
                file_number: 2,
                ..Default::default()
            })),
        };
        assert_eq!(
            describe(Queue::Events, &event.encode_to_vec())
                .unwrap()
                .what,
            "handling of the report that file 2 is uploaded"
        );
        assert_eq!(describe(Queue::Encode, &[0xff, 0xff, 0xff]), None);
        assert_eq!(describe(Queue::Encode, &[]), None);
    }
}
