//! The broker goes away mid-run: RabbitMQ closes every connection of the stack's processes
//! (`rabbitmqctl close_connection`, as a broker restart or a network cut would). Publishers and
//! consumers reconnect with backoff, redeclare the topology, and the run still delivers every
//! file exactly once.

use filedrop_integration_tests::services::{Moto, connections_of, rabbitmqctl};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{FileFormat, RunState};
use std::time::Duration;

fn staged_segments(stack: &Stack) -> usize {
    std::fs::read_dir(stack.staging_dir().join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|run| {
            std::fs::read_dir(run.path().join("segments"))
                .map(|segments| segments.count())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_survives_the_broker_closing_every_connection() {
    const BUCKET: &str = "exports";
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let request = client::split(
        client::request_to(&moto, BUCKET, "reconnect/", FileFormat::Parquet),
        750_000,
    );
    let connections = connections_of(&stack.pids());
    assert!(
        connections.len() >= 2,
        "the control plane and the worker each hold a connection: {connections:?}"
    );

    let url = stack.api();
    let exporting = tokio::spawn({
        let request = request.clone();
        async move { client::export(&url, &request, data::lazy_table(3_000_000, 50_000)).await }
    });
    // Mid-run by construction: the stream has begun, and a run cannot end before its stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while staged_segments(&stack) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no segment was staged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closing: Vec<_> = connections
        .iter()
        .map(|connection| {
            rabbitmqctl()
                .args(["close_connection", connection, "connection loss test"])
                .spawn()
                .expect("rabbitmqctl close_connection")
        })
        .collect();
    for mut close in closing {
        assert!(
            close.wait().unwrap().success(),
            "closing a connection failed"
        );
    }

    let accepted = exporting
        .await
        .unwrap()
        .expect("the export is accepted across the reconnection");
    let run = client::run_to_end(&stack.api(), &accepted.run_id, Duration::from_secs(600)).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let s3 = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let objects = s3::list(&s3, BUCKET, "reconnect/").await;
    assert_eq!(
        objects.len(),
        6,
        "four files, the manifest and a marker: {objects:?}"
    );
    assert_eq!(s3::open_uploads(&s3, BUCKET).await, Vec::<String>::new());
    for log in ["control-plane.log", "worker-1.log"] {
        let text = std::fs::read_to_string(stack.dir.join(log)).unwrap();
        assert!(
            text.contains("reconnected to rabbitmq"),
            "{log} shows no reconnection"
        );
    }

    // Both sides are connected again: a second export goes through.
    let again = client::export(&stack.api(), &request, data::table(60_000, 20_000))
        .await
        .expect("accepted after reconnecting");
    let run = client::run_to_end(&stack.api(), &again.run_id, Duration::from_secs(120)).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
}
