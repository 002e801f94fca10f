//! The boundary of every task: a task that panics fails its run, never its process.
//!
//! [`consume`] takes a queue's tasks and [`guarded`] runs each one's handler; a panic inside
//! it is caught (`filedrop_runtime::panic`), the run is failed with `INTERNAL` and a message
//! that names the task and the place of the panic (no data, no secret), and the message is
//! dead-lettered. The process goes on with the other tasks. A fault injected for tests (`filedrop_runtime::faults`) fires here too,
//! inside the boundary.

use crate::{Context, report};
use filedrop_core::failure::RunFailure;
use filedrop_runtime::broker::{BrokerError, Outcome, Queue};
use filedrop_runtime::faults::Place;
use std::future::Future;
use tracing::error;

/// Consumes `queue` until shutdown, each task decoded as a `T` (one that does not decode is
/// dead-lettered) and handled by `handle` inside the boundary, at most `prefetch` at once.
pub async fn consume<T, F, Fut>(
    context: Context,
    queue: Queue,
    prefetch: u16,
    handle: F,
) -> Result<(), BrokerError>
where
    T: prost::Message + Default + 'static,
    F: Fn(Context, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let broker = context.broker.clone();
    broker
        .consume(queue, prefetch, move |task: T, payload| {
            let handled = handle(context.clone(), task);
            let context = context.clone();
            async move { guarded(&context, queue, &payload, handled).await }
        })
        .await
}

/// Runs `handle` for the task in `payload`, taken from `queue`.
pub async fn guarded<Fut>(context: &Context, queue: Queue, payload: &[u8], handle: Fut) -> Outcome
where
    Fut: Future<Output = Outcome>,
{
    let place = match queue {
        Queue::Encode => Place::Encode,
        Queue::Upload => Place::Upload,
        Queue::Finalize => Place::Finalize,
        Queue::Events => Place::Events,
    };
    let handled = filedrop_runtime::panic::catch(async {
        context.faults.inject(place, payload);
        handle.await
    })
    .await;
    let panic = match handled {
        Ok(outcome) => return outcome,
        Err(panic) => panic,
    };
    let Some(task) = filedrop_runtime::tasks::describe(queue, payload) else {
        error!(?queue, %panic, "an undecodable task panicked; dead-lettering it");
        return Outcome::Reject;
    };
    report::fail(
        context,
        &task.run_id,
        RunFailure::panicked(&task.what, panic),
    )
    .await
}
