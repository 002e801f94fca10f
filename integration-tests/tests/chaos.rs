//! Chaos: concurrent exports, each with an idempotency key and a slowly produced stream, while
//! workers and the control plane are killed with SIGKILL and restarted and RabbitMQ closes
//! every connection. Each client sends again (same key) until its run succeeds, as a client
//! of filedrop should. Afterwards every run has ended, every export's files hold its table
//! exactly once, and no multipart upload is left open.
//!
//! `FILEDROP_CHAOS_EXPORTS` sets the number of exports (default 20); the figures it prints
//! are recorded in docs/RELIABILITY.md.

use filedrop_integration_tests::services::{Moto, close_connections_of};
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{FileFormat, ListRunsRequest, RunState};
use futures::StreamExt;
use std::time::Duration;

const BUCKET: &str = "chaos";
const ROWS: i64 = 100_000;
/// Forty batches, one every 150 ms: each stream lasts about six seconds.
const BATCH_ROWS: i64 = 2_500;

fn exports() -> usize {
    std::env::var("FILEDROP_CHAOS_EXPORTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20)
}

/// One client: sends its table (slowly) until its run succeeds; answers how many attempts it
/// took.
async fn deliver(api: client::Api, request: filedrop_proto::v1::ExportRequest) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    for attempt in 1.. {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} was not delivered after {attempt} attempts",
            request.idempotency_key
        );
        let slow = futures::stream::iter(0..ROWS / BATCH_ROWS).then(|index| async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            Ok(data::batch(index * BATCH_ROWS, BATCH_ROWS))
        });
        let accepted = match client::export_stream(&api, &request, None, slow).await {
            Ok(accepted) => accepted,
            Err(_) => {
                // The control plane went away, or the stream broke: send again.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Ok(run) =
            tokio::time::timeout(Duration::from_secs(120), follow(&api, &accepted.run_id)).await
        else {
            continue;
        };
        if run == Some(RunState::Succeeded) {
            return attempt;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    unreachable!()
}

/// The run's last state, followed through control-plane restarts (`None`: not readable now).
async fn follow(api: &client::Api, run_id: &str) -> Option<RunState> {
    loop {
        match client::try_get_run(api, run_id).await {
            Ok(run)
                if matches!(
                    run.state(),
                    RunState::Succeeded | RunState::Failed | RunState::Cancelled
                ) =>
            {
                return Some(run.state());
            }
            Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_exports_survive_killed_processes_and_a_broker_cut_each_delivered_once() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions {
        workers: 2,
        control_plane_env: vec![
            ("FILEDROP_LEASES__HEARTBEAT_SECS".into(), "1".into()),
            ("FILEDROP_LEASES__EXPIRY_SECS".into(), "3".into()),
        ],
        ..StackOptions::default()
    });
    let api = stack.api();
    let count = exports();
    let clients: Vec<_> = (0..count)
        .map(|index| {
            let mut request = client::split(
                client::request_to(
                    &moto,
                    BUCKET,
                    &format!("chaos/{index:02}/"),
                    FileFormat::Csv,
                ),
                50_000,
            );
            request.filename_template = "part-{{file_number}}.csv".into();
            request.idempotency_key = format!("chaos-{index:02}");
            tokio::spawn(deliver(api.clone(), request))
        })
        .collect();

    // The faults, while the first streams arrive (and again during the retries).
    let mut faults = Vec::new();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stack.kill_and_restart_control_plane();
    faults.push("control plane killed (SIGKILL) mid-stream and restarted");
    stack.kill_worker(0);
    faults.push("worker 0 killed (SIGKILL)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.restart_worker(0, &[]);
    // rabbitmqctl takes a second or so per call.
    let closed = close_connections_of(&stack.pids());
    faults.push("RabbitMQ closed every connection");
    stack.kill_worker(1);
    faults.push("worker 1 killed (SIGKILL)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.restart_worker(1, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stack.kill_and_restart_control_plane();
    faults.push("control plane killed (SIGKILL) again and restarted");

    let mut attempts = Vec::with_capacity(count);
    for client in clients {
        attempts.push(client.await.expect("a client"));
    }

    // Every run has ended; every export is its table exactly once; nothing is left open.
    let listed = client::list_runs(
        &api,
        ListRunsRequest {
            page_size: 500,
            ..Default::default()
        },
    )
    .await
    .expect("ListRuns");
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for run in &listed.runs {
        let state = follow(&api, &run.run_id).await.expect("a run's state");
        *outcomes.entry(format!("{state:?}")).or_default() += 1;
    }
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    for index in 0..count {
        let prefix = format!("chaos/{index:02}/");
        let objects = s3::list(&reader, BUCKET, &prefix).await;
        let mut rows = 0;
        let mut files = 0;
        for object in objects.iter().filter(|object| object.key.ends_with(".csv")) {
            files += 1;
            rows += data::csv_rows(s3::get(&reader, BUCKET, &object.key).await);
        }
        assert_eq!((files, rows), (2, ROWS as u64), "{prefix}: {objects:?}");
        // One manifest: an attempt that failed left none, and only one succeeded.
        assert_eq!(
            objects.len(),
            4,
            "two files, a manifest, a marker: {objects:?}"
        );
    }
    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
    println!(
        "chaos: {count} exports, faults: {faults:?} ({closed} broker connections closed); \
         attempts per export {attempts:?} ({} in all); runs by outcome {outcomes:?}",
        attempts.iter().sum::<usize>()
    );
    assert_eq!(outcomes.get("Succeeded"), Some(&count), "{outcomes:?}");
}
