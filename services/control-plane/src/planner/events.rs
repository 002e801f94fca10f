//! Worker events and dead letters. An event is recorded, then its run planned again; an
//! event whose handling panics fails its run with `INTERNAL`, and so does a task that died in
//! the dead-letter queue of the delivery limit (a poison message that crashed every process
//! that took it).

use super::{PlanError, Planner, location_of};
use crate::store::EncodedBlocks;
use crate::store::states::Transition;
use filedrop_core::failure::RunFailure;
use filedrop_proto::jobs::v1::{WorkerEvent, worker_event};
use filedrop_runtime::broker::{
    BrokerError, DELIVERY_LIMIT, DeadLetter, DeathReason, Outcome, Queue,
};
use filedrop_runtime::faults::Place;
use prost::Message;
use std::sync::Arc;
use tracing::{info, warn};

impl Planner {
    /// Consumes worker events until shutdown.
    pub async fn consume_events(self: Arc<Self>) -> Result<(), BrokerError> {
        let broker = self.broker.clone();
        broker
            .consume(Queue::Events, 16, move |event: WorkerEvent, payload| {
                let planner = self.clone();
                async move { planner.on_event(event, &payload).await }
            })
            .await
    }

    async fn on_event(&self, event: WorkerEvent, payload: &[u8]) -> Outcome {
        let handled = filedrop_runtime::panic::catch(async {
            self.inject_fault(&event).await;
            self.apply(&event).await
        })
        .await;
        match handled {
            Ok(Ok(())) => Outcome::Ack,
            Ok(Err(error)) => {
                warn!(run_id = %event.run_id, %error, "event handling failed, will retry");
                Outcome::Retry
            }
            Err(panic) => {
                // The event cannot be handled: the run cannot go on. Tried again only if the
                // failure cannot be recorded now; after the delivery limit the dead-letter
                // consumer fails the run.
                let what = filedrop_runtime::tasks::describe(Queue::Events, payload)
                    .map_or_else(|| "handling of a worker's report".to_owned(), |t| t.what);
                let failure = RunFailure::panicked(&what, panic);
                match self.fail_run(&event.run_id, &failure).await {
                    Ok(()) => Outcome::Reject,
                    Err(error) => {
                        warn!(run_id = %event.run_id, %error, "could not fail the run of a panicked event, will retry");
                        Outcome::Retry
                    }
                }
            }
        }
    }

    /// Injects the fault configured for events (tests only), matched against the request of
    /// the event's run.
    async fn inject_fault(&self, event: &WorkerEvent) {
        if !self.faults.any_at(Place::Events) {
            return;
        }
        if let Ok(Some(run)) = self.store.get_run(&event.run_id).await
            && let Ok(request) = self.request_of(&run)
        {
            self.faults.inject(Place::Events, &request.encode_to_vec());
        }
    }

    /// Consumes the dead-letter queue until shutdown: a task that died of the delivery limit
    /// (each process that took it stopped before finishing it) fails its run, so that no run
    /// waits for it forever. A rejected task needs nothing: whoever rejected it reported why.
    pub async fn consume_dead_letters(self: Arc<Self>) -> Result<(), BrokerError> {
        let broker = self.broker.clone();
        broker
            .consume_dead_letters(4, move |letter| {
                let planner = self.clone();
                async move { planner.on_dead_letter(letter).await }
            })
            .await
    }

    async fn on_dead_letter(&self, letter: DeadLetter) -> Outcome {
        let task = letter
            .queue
            .and_then(|queue| filedrop_runtime::tasks::describe(queue, &letter.payload));
        let Some(task) = task else {
            warn!(queue = ?letter.queue, reason = ?letter.reason, "an undecodable message was dead-lettered; dropping it");
            return Outcome::Ack;
        };
        let why = match &letter.reason {
            DeathReason::Rejected => {
                info!(run_id = %task.run_id, task = %task.what, "a rejected task was dead-lettered; its failure was reported");
                return Outcome::Ack;
            }
            DeathReason::DeliveryLimit => format!(
                "was given to a process {} times and each stopped before finishing it (a crash, \
                 or a kill for lack of memory)",
                DELIVERY_LIMIT + 1
            ),
            DeathReason::Other(reason) => format!("was dropped by the queue ({reason})"),
        };
        let failure = RunFailure::fault(&task.what, why);
        match self.fail_run(&task.run_id, &failure).await {
            Ok(()) => Outcome::Ack,
            Err(error) => {
                warn!(run_id = %task.run_id, %error, "could not fail the run of a dead-lettered task, will retry");
                Outcome::Retry
            }
        }
    }

    async fn apply(&self, event: &WorkerEvent) -> Result<(), PlanError> {
        let run_id = event.run_id.as_str();
        match &event.event {
            Some(worker_event::Event::SegmentEncoded(encoded)) => {
                self.store
                    .segment_encoded(run_id, encoded.segment_index, &EncodedBlocks::of(encoded))
                    .await?;
                self.plan(run_id).await
            }
            Some(worker_event::Event::FileUploaded(uploaded)) => {
                // Under the planning lock: a file's task is published before its row is
                // recorded, so a fast upload's event must wait for the planning step that
                // published it, or its update would find no row and be lost.
                // Another replica's planning step may still be between the two: the event is
                // tried again until the row is there.
                let one_at_a_time = self.lock.lock().await;
                let known = self
                    .store
                    .file_uploaded(
                        run_id,
                        uploaded.file_number,
                        uploaded.size,
                        &uploaded.sha256,
                    )
                    .await?;
                drop(one_at_a_time);
                if !known && !self.run_has_ended(run_id).await? {
                    return Err(PlanError::FileNotPlannedYet(uploaded.file_number));
                }
                self.plan(run_id).await
            }
            Some(worker_event::Event::RunFinalized(finalized)) => {
                // What it wrote, for the runs that will replace it; and the runs it replaced.
                if let Some(run) = self.store.get_run(run_id).await?
                    && let Ok(spec) = self.spec_of(&run)
                {
                    let objects: Vec<(String, String)> = finalized
                        .objects
                        .iter()
                        .map(|object| (object.object_key.clone(), object.e_tag.clone()))
                        .collect();
                    self.store
                        .record_delivered(run_id, &location_of(&spec.destination), &objects)
                        .await?;
                    self.store
                        .supersede(&finalized.superseded_runs, run_id)
                        .await?;
                }
                if self.store.advance(run_id, Transition::Committed).await? {
                    info!(run_id, "run succeeded");
                    self.delete_staging(run_id).await;
                }
                Ok(())
            }
            Some(worker_event::Event::TaskFailed(failed)) => {
                let failure = RunFailure {
                    code: failed.code(),
                    message: failed.message.clone(),
                    resolutions: failed.resolutions().collect(),
                };
                self.fail_run(run_id, &failure).await
            }
            None => Ok(()),
        }
    }
}
