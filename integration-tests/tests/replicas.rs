//! Control planes as a cluster runs them: two replicas on one PostgreSQL run store, one broker
//! and one staging store. A run exported through either is followed, listed and read through
//! the other, with the same tokens; a run whose replica is killed mid-stream is failed by the
//! other within the lease, and sent again.

use filedrop_integration_tests::client::{self, Api};
use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{RunStoreKind, Stack, StackOptions};
use filedrop_integration_tests::{data, s3};
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

/// The replica receiving a stream is killed (SIGKILL) mid-stream: the other replica fails the
/// run within the lease (`STREAM_INCOMPLETE`), nothing is visible in the bucket, and the
/// client's retry with the same idempotency key delivers the table exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_replica_is_killed_mid_stream_is_failed_by_the_other_and_sent_again() {
    use filedrop_proto::v1::ErrorCode;
    use futures::StreamExt;
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions {
        run_store: RunStoreKind::Postgres,
        control_plane_env: vec![
            ("FILEDROP_LEASES__HEARTBEAT_SECS".into(), "1".into()),
            ("FILEDROP_LEASES__EXPIRY_SECS".into(), "4".into()),
        ],
        ..StackOptions::default()
    });
    let survivor = stack.api();
    let doomed = Api::new(stack.start_replica(), stack.token());
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "killed/", FileFormat::Csv),
        50_000,
    );
    request.filename_template = "orders-{{file_number}}.csv".into();
    request.idempotency_key = "orders-of-the-day".into();

    // A slow stream to the replica about to die: two files' worth arrive, then it is killed.
    let slow = futures::stream::iter(0..40).then(|index| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(data::batch(index * 12_500, 12_500))
    });
    let sending = tokio::spawn({
        let request = request.clone();
        async move { client::export_stream(&doomed, &request, None, slow).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let run_id = loop {
        let listed = client::list_runs(&survivor, ListRunsRequest::default())
            .await
            .unwrap();
        if let Some(run) = listed.runs.first()
            && run.rows >= 100_000
        {
            break run.run_id.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never began"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stack.kill_replica(0);
    let killed_at = std::time::Instant::now();
    assert!(
        sending.await.unwrap().is_err(),
        "the client sees its stream break"
    );

    // The survivor fails the run within the lease (4 s) and a heartbeat or two.
    let run = client::run_to_end(&survivor, &run_id, Duration::from_secs(60)).await;
    let waited = killed_at.elapsed();
    assert_eq!(run.state(), RunState::Failed, "{run:?}");
    let error = run.error.clone().unwrap();
    assert_eq!(error.code(), ErrorCode::StreamIncomplete, "{run:?}");
    assert!(error.message.contains("stopped"), "{}", error.message);
    assert!(waited < Duration::from_secs(20), "failed after {waited:?}");
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
    assert!(s3::list(&reader, BUCKET, "killed/").await.is_empty());

    // The client's retry, to the surviving replica, with the same key: a new attempt.
    let table = data::table(500_000, 12_500);
    let accepted = client::export(&survivor, &request, table)
        .await
        .expect("the retry is accepted");
    assert!(!accepted.replayed, "{accepted:?}");
    let delivered = client::run_to_end(&survivor, &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(delivered.state(), RunState::Succeeded, "{delivered:?}");
    let mut rows = 0;
    let mut files = 0;
    for object in s3::list(&reader, BUCKET, "killed/").await {
        if object.key.ends_with(".csv") {
            files += 1;
            rows += data::csv_rows(s3::get(&reader, BUCKET, &object.key).await);
        }
    }
    assert_eq!((files, rows), (10, 500_000), "the table exactly once");
}
