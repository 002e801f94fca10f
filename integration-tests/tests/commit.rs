//! Nothing is visible at a final key before a run commits: files go up while the stream
//! arrives (pending multipart uploads), and become visible only at the commit, before the
//! manifest and the marker. An export whose stream is not committed leaves nothing, and the
//! same idempotency key then starts a new attempt. A run replacing an earlier one's names
//! leaves only its own objects; a cancelled one touches nothing; write modes that keep
//! existing objects refuse.

use filedrop_integration_tests::services::Moto;
use filedrop_integration_tests::stack::{Stack, StackOptions};
use filedrop_integration_tests::{client, data, s3};
use filedrop_proto::v1::{ErrorCode, FileFormat, RunState};
use futures::StreamExt;
use std::time::Duration;

const BUCKET: &str = "commit";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_become_visible_only_at_the_commit_then_the_manifest_then_the_marker() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "daily/", FileFormat::Csv),
        50_000,
    );
    request.filename_template = "orders-{{file_number}}.csv".into();
    request.destination.as_mut().unwrap().name = "visibility".into();

    // A slow source: 12 files' worth of rows over about four seconds.
    let batches = futures::stream::iter(0..24).then(|index| async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(data::batch(index * 25_000, 25_000))
    });
    let export = tokio::spawn({
        let api = api.clone();
        let request = request.clone();
        async move { client::export_stream(&api, &request, None, batches).await }
    });

    // What a bucket owner polling the prefix sees, beside the run's state just after: a run
    // not committing yet after the listing was not committing during it.
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let mut seen: Vec<(RunState, u64, Vec<String>)> = Vec::new();
    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    loop {
        let keys: Vec<String> = s3::list(&reader, BUCKET, "daily/")
            .await
            .into_iter()
            .map(|object| object.key)
            .collect();
        let listed = client::list_runs(
            &api,
            filedrop_proto::v1::ListRunsRequest {
                destination_name: "visibility".into(),
                ..Default::default()
            },
        )
        .await
        .expect("ListRuns");
        let (state, uploaded) = listed
            .runs
            .first()
            .map_or((RunState::Unspecified, 0), |run| {
                (run.state(), run.files_uploaded)
            });
        let done = state == RunState::Succeeded;
        seen.push((state, uploaded, keys));
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not end: {:?}",
            seen.last()
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let accepted = export.await.unwrap().expect("the export is accepted");
    assert_eq!(accepted.rows, 600_000);

    // Files went up while the stream arrived...
    assert!(
        seen.iter()
            .any(|(state, uploaded, _)| *state == RunState::Receiving && *uploaded > 0),
        "uploads overlap the stream: {seen:?}"
    );
    // ...and nothing was visible until the commit.
    for (state, _, keys) in &seen {
        if matches!(
            state,
            RunState::Unspecified | RunState::Receiving | RunState::Encoding | RunState::Uploading
        ) {
            assert!(
                keys.is_empty(),
                "visible before the commit ({state:?}): {keys:?}"
            );
        }
    }
    let files: Vec<String> = (1..=12)
        .map(|number| format!("daily/orders-{number:07}.csv"))
        .collect();
    let manifest = format!("daily/manifest-visibility-{}.json", accepted.run_id);
    let marker = "daily/orders-.csv.DONE".to_owned();
    // The manifest only beside every file, the marker only beside the manifest.
    for (_, _, keys) in &seen {
        if keys.contains(&manifest) {
            assert!(files.iter().all(|file| keys.contains(file)), "{keys:?}");
        }
        if keys.contains(&marker) {
            assert!(keys.contains(&manifest), "{keys:?}");
        }
    }
    let mut expected = files.clone();
    expected.push(manifest);
    expected.push(marker);
    expected.sort();
    let delivered = &seen.last().unwrap().2;
    assert_eq!(delivered, &expected);
    let mut rows = 0;
    for file in &files {
        rows += data::csv_rows(s3::get(&reader, BUCKET, file).await);
    }
    assert_eq!(rows, 600_000);
    assert_eq!(
        s3::open_uploads(&reader, BUCKET).await,
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncommitted_export_leaves_nothing_and_its_key_starts_a_new_attempt() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "retried/", FileFormat::Csv),
        50_000,
    );
    request.filename_template = "part-{{file_number}}.csv".into();
    request.idempotency_key = "orders-2026-11-30".into();

    // The source fails after two and a half files' worth of rows: no commit goes out.
    let failing = futures::stream::iter(0..8).map(|index| {
        if index == 5 {
            Err(arrow_flight::error::FlightError::ExternalError(
                "the query engine went away".into(),
            ))
        } else {
            Ok(data::batch(index * 25_000, 25_000))
        }
    });
    let refused = client::export_stream(&api, &request, None, failing).await;
    refused.expect_err("no commit, no delivery");
    let listed = client::list_runs(&api, Default::default()).await.unwrap();
    assert_eq!(listed.runs.len(), 1, "{listed:?}");
    let first = client::run_to_end(&api, &listed.runs[0].run_id, RUN_TIMEOUT).await;
    assert_eq!(first.state(), RunState::Failed, "{first:?}");
    assert_eq!(
        first.error.as_ref().unwrap().code(),
        ErrorCode::StreamIncomplete
    );
    // Take-back of the pending uploads runs after the failure: wait until none is open.
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
    assert!(s3::list(&reader, BUCKET, "").await.is_empty());

    // Sent again whole with the same key: a new attempt, which delivers.
    let accepted = client::export(&api, &request, data::table(200_000, 25_000))
        .await
        .expect("the second attempt is accepted");
    assert!(
        !accepted.replayed,
        "a failed uncommitted run is not replayed"
    );
    assert_ne!(accepted.run_id, first.run_id);
    let second = client::run_to_end(&api, &accepted.run_id, RUN_TIMEOUT).await;
    assert_eq!(second.state(), RunState::Succeeded, "{second:?}");
    let csv: Vec<String> = s3::list(&reader, BUCKET, "retried/")
        .await
        .into_iter()
        .map(|object| object.key)
        .filter(|key| key.ends_with(".csv"))
        .collect();
    assert_eq!(csv.len(), 4, "{csv:?}");
    // A third time: the committed run is the key's, and is replayed.
    let again = client::export(&api, &request, data::table(200_000, 25_000))
        .await
        .expect("replayed");
    assert!(again.replayed);
    assert_eq!(again.run_id, accepted.run_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_modes_that_keep_existing_objects_refuse_and_touch_nothing() {
    use filedrop_proto::v1::WriteMode;
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "kept/", FileFormat::Csv),
        50_000,
    );
    request.filename_template = "orders-{{file_number}}.csv".into();
    let first =
        client::export_to_end(&api, &request, data::table(100_000, 25_000), RUN_TIMEOUT).await;
    assert_eq!(first.state(), RunState::Succeeded, "{first:?}");
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let delivered = s3::list_with_e_tags(&reader, BUCKET, "kept/").await;
    assert_eq!(
        delivered.len(),
        4,
        "two files, the manifest and the marker: {delivered:?}"
    );

    for mode in [WriteMode::KeepExisting, WriteMode::FailIfExists] {
        let mut kept = request.clone();
        kept.destination.as_mut().unwrap().write_mode = mode.into();
        if mode == WriteMode::FailIfExists {
            // Refused before any data moves: the first file's key holds an object.
            let refused = client::export(&api, &kept, data::table(150_000, 25_000))
                .await
                .expect_err("refused at validation");
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
            assert_eq!(
                refused.metadata().get("filedrop-error-code").unwrap(),
                "ERROR_CODE_OBJECT_EXISTS"
            );
            assert!(
                refused.message().contains("orders-0000001.csv"),
                "{refused:?}"
            );
            let listed = client::list_runs(&api, Default::default()).await.unwrap();
            assert_eq!(listed.runs.len(), 2, "no run was started: {listed:?}");
        } else {
            let run =
                client::export_to_end(&api, &kept, data::table(150_000, 25_000), RUN_TIMEOUT).await;
            assert_eq!(run.state(), RunState::Failed, "{mode:?}: {run:?}");
            let error = run.error.clone().unwrap();
            assert_eq!(error.code(), ErrorCode::ObjectExists, "{mode:?}: {run:?}");
            assert!(
                error.message.contains("orders-0000001.csv"),
                "{}",
                error.message
            );
        }
        // The earlier run's objects are as they were, and nothing of this run is there.
        s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
        let now = s3::list_with_e_tags(&reader, BUCKET, "kept/").await;
        let manifests: Vec<&(String, String)> = now
            .iter()
            .filter(|(key, _)| key.contains("manifest-"))
            .collect();
        let others: Vec<(String, String)> = now
            .iter()
            .filter(|(key, _)| !key.contains("manifest-"))
            .cloned()
            .collect();
        assert_eq!(manifests.len(), 1, "only the first run's manifest: {now:?}");
        assert_eq!(
            others,
            delivered
                .iter()
                .filter(|(key, _)| !key.contains("manifest-"))
                .cloned()
                .collect::<Vec<_>>(),
            "{mode:?} touched nothing"
        );
    }

    // Elsewhere the same mode writes, and replacing (the default) replaces.
    let mut elsewhere = request.clone();
    elsewhere.destination.as_mut().unwrap().prefix = "fresh/".into();
    elsewhere.destination.as_mut().unwrap().write_mode = WriteMode::KeepExisting.into();
    let run =
        client::export_to_end(&api, &elsewhere, data::table(50_000, 25_000), RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let replaced =
        client::export_to_end(&api, &request, data::table(100_000, 20_000), RUN_TIMEOUT).await;
    assert_eq!(replaced.state(), RunState::Succeeded, "{replaced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_replacing_an_earlier_one_leaves_only_its_own_files_and_a_cancel_touches_nothing() {
    let moto = Moto::start(&[BUCKET]);
    let stack = Stack::start(StackOptions::default());
    let api = stack.api();
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "daily/", FileFormat::Csv),
        50_000,
    );
    request.filename_template = "orders-{{now|format:'yyyy-MM-dd'}}-{{file_number}}.csv".into();
    request.destination.as_mut().unwrap().name = "orders".into();
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);

    // The morning's run: four files; the afternoon's: two, under the same names.
    let morning =
        client::export_to_end(&api, &request, data::table(200_000, 25_000), RUN_TIMEOUT).await;
    assert_eq!(morning.state(), RunState::Succeeded, "{morning:?}");
    assert_eq!(
        s3::list_with_e_tags(&reader, BUCKET, "daily/").await.len(),
        6,
        "four files, the manifest, the marker"
    );
    let afternoon =
        client::export_to_end(&api, &request, data::table(100_000, 20_000), RUN_TIMEOUT).await;
    assert_eq!(afternoon.state(), RunState::Succeeded, "{afternoon:?}");
    let after = s3::list_with_e_tags(&reader, BUCKET, "daily/").await;
    let keys: Vec<&str> = after.iter().map(|(key, _)| key.as_str()).collect();
    // The marker names the day: `daily/orders-<day>-.csv.DONE`.
    let marker = keys
        .iter()
        .find(|key| key.ends_with(".DONE"))
        .expect("a marker");
    let stem = marker.trim_end_matches("-.csv.DONE");
    let mut expected = vec![
        format!("daily/manifest-orders-{}.json", afternoon.run_id),
        (*marker).to_owned(),
        format!("{stem}-0000001.csv"),
        format!("{stem}-0000002.csv"),
    ];
    expected.sort();
    assert_eq!(keys, expected, "exactly the afternoon's delivery");
    let mut rows = 0;
    for key in keys.iter().filter(|key| key.ends_with(".csv")) {
        rows += data::csv_rows(s3::get(&reader, BUCKET, key).await);
    }
    assert_eq!(rows, 100_000);

    // An evening run of the same names, cancelled while it streams: the afternoon's objects
    // are untouched.
    let slow = futures::stream::iter(0..20).then(|index| async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        Ok(data::batch(index * 25_000, 25_000))
    });
    let sending = tokio::spawn({
        let api = api.clone();
        let request = request.clone();
        async move { client::export_stream(&api, &request, None, slow).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let evening = loop {
        let listed = client::list_runs(&api, Default::default()).await.unwrap();
        if let Some(run) = listed.runs.first()
            && run.run_id != afternoon.run_id
            && run.files_uploaded >= 2
        {
            break run.run_id.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the evening run never uploaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    client::cancel_run(&api, &evening).await.expect("CancelRun");
    assert!(
        sending.await.unwrap().is_err(),
        "the cancelled stream is refused"
    );
    let cancelled = client::run_to_end(&api, &evening, RUN_TIMEOUT).await;
    assert_eq!(cancelled.state(), RunState::Cancelled, "{cancelled:?}");
    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
    assert_eq!(
        s3::list_with_e_tags(&reader, BUCKET, "daily/").await,
        after,
        "the cancel touched nothing of the afternoon's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_midway_through_a_commit_leaves_the_rest_to_the_next_one() {
    let moto = Moto::start(&[BUCKET]);
    let mut stack = Stack::start(StackOptions {
        workers: 0,
        ..StackOptions::default()
    });
    // The worker dies (abort, as an out-of-memory kill would) just after it made the first
    // file visible.
    let worker = stack.start_worker_with(&[("FILEDROP_TEST_FAULTS", "commit:abort:midcommit/")]);
    let api = stack.api();
    let mut request = client::split(
        client::request_to(&moto, BUCKET, "midcommit/", FileFormat::Csv),
        50_000,
    );
    request.filename_template = "orders-{{file_number}}.csv".into();
    let run_id = client::export(&api, &request, data::table(200_000, 25_000))
        .await
        .expect("the export is accepted")
        .run_id;

    let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
    while !stack.worker_exited(worker) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never reached the commit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Half-committed: the first file is visible, nothing else, no marker.
    let reader = s3::client(&moto.endpoint, &moto.access_key_id, &moto.secret_access_key);
    let midway = s3::list_with_e_tags(&reader, BUCKET, "midcommit/").await;
    let keys: Vec<&str> = midway.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["midcommit/orders-0000001.csv"]);
    let run = client::get_run(&api, &run_id).await;
    assert_eq!(run.state(), RunState::Committing, "{run:?}");

    // The next worker takes the commit over from the records: the first file is recognised as
    // completed (its upload is gone), the others are completed, then the manifest and marker.
    stack.restart_worker(worker, &[]);
    let run = client::run_to_end(&api, &run_id, RUN_TIMEOUT).await;
    assert_eq!(run.state(), RunState::Succeeded, "{run:?}");
    let delivered = s3::list_with_e_tags(&reader, BUCKET, "midcommit/").await;
    let files: Vec<&(String, String)> = delivered
        .iter()
        .filter(|(key, _)| key.ends_with(".csv"))
        .collect();
    assert_eq!(files.len(), 4, "{delivered:?}");
    assert_eq!(
        files[0], &midway[0],
        "the first file is the one completed before the crash"
    );
    for (key, _) in &files {
        assert_eq!(data::csv_rows(s3::get(&reader, BUCKET, key).await), 50_000);
    }
    assert!(
        delivered.iter().any(|(key, _)| key.ends_with(".DONE")),
        "{delivered:?}"
    );
    s3::wait_until_no_open_uploads(&reader, BUCKET, Duration::from_secs(60)).await;
}
