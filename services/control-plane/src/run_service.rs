//! `RunService`: the state of runs, by request or as a stream of changes; cancelling a run
//! and retrying a failed one (carried out by the planner).

use crate::auth::tenant_of;
use crate::error::OrInternal;
use crate::planner::{NotRetryable, Planner};
use crate::store::{RunFilter, RunRecord, RunStore, is_final, state_name};
use crate::wire;
use filedrop_proto::v1::run_service_server::RunService;
use filedrop_proto::v1::{
    CancelRunRequest, CancelRunResponse, GetRunRequest, GetRunResponse, ListRunsRequest,
    ListRunsResponse, RetryRunRequest, RetryRunResponse, Run, RunState, WatchRunRequest,
    WatchRunResponse,
};
use filedrop_runtime::shutdown::Shutdown;
use futures::stream::BoxStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

/// How often a watch looks for changes. Watches read the store, so any replica can serve any
/// run's watch.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// The run service.
#[derive(Debug, Clone)]
pub struct RunEndpoint {
    store: RunStore,
    planner: Arc<Planner>,
    shutdown: Shutdown,
}

impl RunEndpoint {
    /// A run service over `store`, cancelling and retrying through `planner`; watches end at
    /// `shutdown`.
    pub fn new(store: RunStore, planner: Arc<Planner>, shutdown: Shutdown) -> Self {
        Self {
            store,
            planner,
            shutdown,
        }
    }

    async fn load(&self, tenant: &str, run_id: &str) -> Result<RunRecord, Status> {
        self.store
            .get_run_of(tenant, run_id)
            .await
            .or_internal("reading the run")?
            .ok_or_else(|| Status::not_found(format!("run {run_id:?} not found")))
    }
}

/// The wire form of a run.
pub fn to_proto(run: &RunRecord) -> Run {
    let timestamp = wire::timestamp;
    Run {
        run_id: run.run_id.clone(),
        state: run.state.into(),
        rows: run.rows,
        files: run.files,
        files_uploaded: run.files_uploaded,
        bytes_uploaded: run.bytes_uploaded,
        error: run.failure.as_ref().map(|failure| failure.to_proto()),
        created_at: Some(timestamp(run.created_at)),
        updated_at: Some(timestamp(run.updated_at)),
    }
}

/// What a `ListRunsRequest` asks for, checked.
fn run_filter(request: &ListRunsRequest) -> Result<(RunFilter, u32), Status> {
    let page_size = wire::page_size(request.page_size)?;
    let mut states = Vec::with_capacity(request.states.len());
    for &state in &request.states {
        match RunState::try_from(state) {
            Ok(RunState::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "states: {state} is not a run state; give RUN_STATE_RECEIVING, \
                     RUN_STATE_SUCCEEDED, RUN_STATE_FAILED, …"
                )));
            }
            Ok(state) => states.push(state),
        }
    }
    let millis = |time: &prost_types::Timestamp| {
        time.seconds * 1000 + i64::from(time.nanos.clamp(0, 999_999_999)) / 1_000_000
    };
    let filter = RunFilter {
        states,
        created_after: request.created_after.as_ref().map(millis),
        created_before: request.created_before.as_ref().map(millis),
        destination_name: (!request.destination_name.is_empty())
            .then(|| request.destination_name.clone()),
    };
    Ok((filter, page_size))
}

#[tonic::async_trait]
impl RunService for RunEndpoint {
    type WatchRunStream = BoxStream<'static, Result<WatchRunResponse, Status>>;

    async fn list_runs(
        &self,
        request: Request<ListRunsRequest>,
    ) -> Result<Response<ListRunsResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let request = request.into_inner();
        let (filter, page_size) = run_filter(&request)?;
        let runs = self
            .store
            .runs_of(
                &tenant,
                &filter,
                wire::page_start(&request.page_token),
                page_size + 1,
            )
            .await
            .or_internal("listing runs")?;
        let (runs, next_page_token) = wire::page(runs, page_size, |run| &run.run_id);
        Ok(Response::new(ListRunsResponse {
            runs: runs.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn cancel_run(
        &self,
        request: Request<CancelRunRequest>,
    ) -> Result<Response<CancelRunResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let run = self.load(&tenant, &request.into_inner().run_id).await?;
        if run.state != RunState::Cancelled {
            self.planner
                .cancel(&run)
                .await
                .or_internal("cancelling the run")?;
        }
        let run = self.load(&tenant, &run.run_id).await?;
        if run.state == RunState::Succeeded {
            return Err(Status::failed_precondition(format!(
                "run {:?} has succeeded: its files are delivered and cannot be taken back by \
                 cancelling; delete them at the destination if they are not wanted",
                run.run_id
            )));
        }
        Ok(Response::new(CancelRunResponse {
            run: Some(to_proto(&run)),
        }))
    }

    async fn retry_run(
        &self,
        request: Request<RetryRunRequest>,
    ) -> Result<Response<RetryRunResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let run = self.load(&tenant, &request.into_inner().run_id).await?;
        let retried = self
            .planner
            .retry(&run)
            .await
            .or_internal("retrying the run")?;
        if let Err(why) = retried {
            let run_id = &run.run_id;
            return Err(Status::failed_precondition(match why {
                NotRetryable::NotFailed(state) => format!(
                    "run {run_id:?} is {}: only a failed run can be retried",
                    state_name(state)
                ),
                NotRetryable::FailedReceiving => format!(
                    "run {run_id:?} failed while its data was being received, so nothing \
                     complete is staged: export the data again"
                ),
                NotRetryable::StagingGone => format!(
                    "run {run_id:?}'s staged data is no longer kept (the service keeps a \
                     failed run's data for staging.keep_failed_hours): export the data again"
                ),
            }));
        }
        let run = self.load(&tenant, &run.run_id).await?;
        Ok(Response::new(RetryRunResponse {
            run: Some(to_proto(&run)),
        }))
    }

    async fn get_run(
        &self,
        request: Request<GetRunRequest>,
    ) -> Result<Response<GetRunResponse>, Status> {
        let tenant = tenant_of(&request)?;
        let run = self.load(&tenant, &request.into_inner().run_id).await?;
        Ok(Response::new(GetRunResponse {
            run: Some(to_proto(&run)),
        }))
    }

    async fn watch_run(
        &self,
        request: Request<WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let tenant = tenant_of(&request)?;
        let run_id = request.into_inner().run_id;
        let first = self.load(&tenant, &run_id).await?;
        let (sender, receiver) = mpsc::channel(8);
        let endpoint = self.clone();
        tokio::spawn(async move {
            let mut last = to_proto(&first);
            if sender
                .send(Ok(WatchRunResponse {
                    run: Some(last.clone()),
                }))
                .await
                .is_err()
            {
                return;
            }
            let mut state = first.state;
            while !is_final(state) {
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                    _ = endpoint.shutdown.wait() => {
                        let _ = sender.send(Err(Status::unavailable("the server is shutting down; watch again"))).await;
                        return;
                    }
                    _ = sender.closed() => return,
                }
                let run = match endpoint.load(&tenant, &run_id).await {
                    Ok(run) => run,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                };
                state = run.state;
                let current = to_proto(&run);
                if current != last {
                    last = current.clone();
                    if sender
                        .send(Ok(WatchRunResponse { run: Some(current) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}
