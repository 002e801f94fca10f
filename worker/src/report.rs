//! Worker events, and what to do with a task that failed.

use crate::Context;
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{TaskFailed, WorkerEvent, worker_event};
use filedrop_runtime::broker::{Outcome, Queue};
use tracing::{error, warn};

/// Publishes an event for `run_id`. `Retry` if the broker did not take it: the task is redone,
/// and redoing it is harmless.
pub async fn publish(context: &Context, run_id: &str, event: worker_event::Event) -> Outcome {
    let message = WorkerEvent {
        run_id: run_id.to_owned(),
        event: Some(event),
    };
    match context.broker.publish(Queue::Events, &message).await {
        Ok(()) => Outcome::Ack,
        Err(error) => {
            warn!(run_id, %error, "could not publish event; the task will be redone");
            Outcome::Retry
        }
    }
}

/// Reports a task that can never succeed: the run fails with `failure`, and the task is
/// dead-lettered.
pub async fn fail(context: &Context, run_id: &str, failure: RunFailure) -> Outcome {
    error!(run_id, code = ?failure.code, message = %failure.message, "task failed");
    let proto = failure.to_proto();
    let event = worker_event::Event::TaskFailed(TaskFailed {
        code: proto.code,
        message: proto.message,
        resolutions: proto.resolutions,
    });
    match publish(context, run_id, event).await {
        Outcome::Ack => Outcome::Reject,
        other => other,
    }
}
