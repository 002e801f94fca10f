//! Control planes as a cluster runs them: two replicas on one PostgreSQL run store, one broker
//! and one staging store. A run exported through either is followed, listed and read through
//! the other, with the same tokens.

use filedrop_integration_tests::client::{self, Api};
use filedrop_integration_tests::data;
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{RunStoreKind, Stack, StackOptions};
use filedrop_proto::v1::{FileFormat, ListRunsRequest, RunState};
use std::time::Duration;

const BUCKET: &str = "replicas";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_on_one_postgres_serve_one_runs_watch_from_either() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions {
        run_store: RunStoreKind::Postgres,
        ..StackOptions::default()
    });
    let first = stack.api();
    let second = Api::new(stack.start_replica(), stack.token());
    let request = client::split(
        client::request_to(&moto, BUCKET, "replicas/", FileFormat::Csv),
        50_000,
    );

    // Exported through the first, watched through the second to its end.
    let accepted = client::export(&first, &request, data::table(150_000, 50_000))
        .await
        .expect("the export is accepted");
    let watched = client::watch_to_end(&second, &accepted.run_id, RUN_TIMEOUT).await;
    let last = watched.last().expect("a watch yields the run");
    assert_eq!(last.state(), RunState::Succeeded, "{watched:?}");
    assert_eq!((last.files, last.files_uploaded), (3, 3), "{last:?}");

    // And the other way round.
    let other = client::export(&second, &request, data::table(1_000, 500))
        .await
        .expect("the export is accepted");
    let run = client::run_to_end(&first, &other.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    for api in [&first, &second] {
        let listed = client::list_runs(api, ListRunsRequest::default())
            .await
            .unwrap();
        let ids: Vec<&str> = listed.runs.iter().map(|run| run.run_id.as_str()).collect();
        assert_eq!(ids, [other.run_id.as_str(), accepted.run_id.as_str()]);
    }
}
